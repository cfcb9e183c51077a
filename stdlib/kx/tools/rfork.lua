-- kxrun rfork: resume a child of a prepared parent (kx.rfork).
return require("kx.cli").tool{
	name = "rfork",
	summary = "Remote fork (kx.rfork) on the command line.",
	commands = {
		{
			name = "resume",
			args = { "ADDRESS", "ID", "KEY" },
			summary = "become a child of the parent that called rfork.prepare{}",
			flags = {
				{ "transport", "t", choices = { "auto", "rdma", "tcp" }, default = "auto",
				  env = "KXRUN_RFORK_TRANSPORT", arg = "T",
				  help = "what carries the pages: rdma (one-sided RDMA READs; an error when no "
				      .. "RDMA port reaches the parent or its holder offers none), tcp, or auto "
				      .. "(rdma when both sides can, else tcp)" },
				-- a lean container (any of these): mount, UTS and IPC namespaces of its own
				{ "rootfs", arg = "DIR", help = "container: DIR is the child's / (read-only)" },
				{ "pid", type = "boolean", help = "container: a PID namespace (the child is its 1)" },
				{ "net", arg = "new|NAME", help = "container: a new network namespace (only lo), "
				      .. "or the one `ip netns` calls NAME" },
				{ "hostname", arg = "NAME", help = "container: the child's host name" },
				{ "memory", arg = "SIZE", help = "container: cgroup memory limit (64M, 1G)" },
				{ "cpus", type = "number", arg = "N", help = "container: cgroup CPU limit, in cores" },
				{ "pids", type = "integer", arg = "N", help = "container: cgroup process limit" },
			},
			help = [[
The parent printed ADDRESS (HOST:PORT), ID and KEY (its handle's address, id
and key).  This process is replaced by the parent's Lua state as it was at
prepare, and prepare returns there again with h.child == true.  Pages of the
parent's memory are fetched on first touch (userfaultfd: root, or
vm.unprivileged_userfaultfd=1), over RDMA when the parent prepared with
transport "rdma" or "auto" and a local RDMA port reaches it (the child's
handle says which: h.transport, h.transport_info).  With any container flag
the child runs in a lean container (root only): mount, UTS and IPC
namespaces of its own and what the flags ask for; this process stays
outside, passes signals on, removes the cgroups when the child ends and exits
as it did.  Exits 1 with a message when the parent cannot be resumed here.]],
			run = function(opts, args)
				local rfork = require "kx.rfork"
				local container
				if opts.rootfs or opts.pid or opts.net or opts.hostname or opts.memory
				   or opts.cpus or opts.pids then
					container = { rootfs = opts.rootfs, pid = opts.pid, hostname = opts.hostname,
					              net = opts.net == "new" or opts.net,
					              cgroup = { memory = opts.memory, cpu = opts.cpus, pids = opts.pids } }
				end
				return rfork.resume{ address = args[1], id = args[2], key = args[3],
				                     transport = opts.transport, container = container }
			end,
		},
	},
	epilog = [=[
Environment: KXRUN_RFORK_TIMEOUT_MS (each request to the parent, 10000),
KXRUN_RFORK_READAHEAD (pages per fault, 16), KXRUN_RFORK_RDMA_DEVICE
(NAME[:PORT[:GID_INDEX]]: the RDMA port to use), KXRUN_RFORK_STATS=1 (the
resume's stages and the pages fetched, on stderr).]=],
}
