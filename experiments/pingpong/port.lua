-- A TCP port for pingpong_server: outside the kernel's range of ephemeral
-- ports, from which connections take their local ports.  A client's port
-- in TIME_WAIT (thousands on a busy machine) refuses a listening bind,
-- SO_REUSEADDR or not: a random port in that range failed now and then
-- with "bind: Address already in use".
return function()
	local lo, hi = 32768, 60999
	local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
	if f then
		local a, b = f:read("n", "n")
		f:close()
		if a and b then lo, hi = a, b end
	end
	if lo > 11024 then return math.random(10000, lo - 1) end
	if hi < 64535 then return math.random(hi + 1, 65535) end
	return math.random(lo, hi) -- the range leaves no room outside it
end
