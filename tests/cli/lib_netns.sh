# Sourced after tests/cli/lib.sh: two network namespaces joined by a veth
# pair, torn down on exit.  netns_setup sets NS_A, NS_B (names) and ADDR_A,
# ADDR_B (their addresses, one /24); it skips the test (exit 77, with the
# probe's reason) when network namespaces are absent; a failure to set them
# up after the probe said they work fails the test.
# netns_run NS CMD... runs a command inside a namespace.

netns_teardown() {
	local ns
	for ns in ${NS_A:-} ${NS_B:-}; do
		# processes left inside would keep nothing alive, but say so
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	return 0
}

netns_setup() {
	need netns
	local tag="kx$$" sub=$(($$ % 200 + 20))
	NS_A="${tag}a" NS_B="${tag}b"
	ADDR_A="10.231.$sub.1" ADDR_B="10.231.$sub.2"
	trap 'netns_teardown; rm -rf "$T"' EXIT
	ip netns add "$NS_A" 2>"$T/netns.err" ||
		fail "ip netns add failed: $(head -1 "$T/netns.err")"
	ip netns add "$NS_B" 2>"$T/netns.err" ||
		fail "ip netns add failed: $(head -1 "$T/netns.err")"
	ip link add "${tag}va" type veth peer name "${tag}vb" 2>"$T/netns.err" ||
		fail "no veth pair: $(head -1 "$T/netns.err")"
	ip link set "${tag}va" netns "$NS_A" && ip link set "${tag}vb" netns "$NS_B" &&
	ip -n "$NS_A" addr add "$ADDR_A/24" dev "${tag}va" &&
	ip -n "$NS_B" addr add "$ADDR_B/24" dev "${tag}vb" &&
	ip -n "$NS_A" link set "${tag}va" up && ip -n "$NS_B" link set "${tag}vb" up &&
	ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up ||
		fail "could not configure the veth pair between $NS_A and $NS_B"
}

netns_run() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}
