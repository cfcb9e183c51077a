-- MITOSIS's os-network/rc-connection microbenchmark on kx.rfork's
-- transports: how fast RC connections are set up, and the latency and
-- throughput of one-sided RDMA READs of 4 KiB to 1 MiB, each beside the
-- same operation over TCP (kx.rfork's holder answering), in the same run.
--
--   kxrun experiments/rdma_rc_connection.lua [--size 0,4K,16K,64K,256K,1M]
--        [--connections 20] [--reads 200] [--image 64M] [--reps 5] [--out DIR]
--
-- This process is the parent: it holds --image bytes of Lua strings and
-- calls rfork.prepare{transport = "auto"}; its holder (and the holder's
-- RDMA agent, when an RDMA port reaches 127.0.0.1 or --listen) serves them.
-- Size 0 is connection set-up: a connection to the holder able to read
-- pages, timed from the TCP connect (hello and descriptor; for rdma also
-- opening the device, a queue pair, the exchange with the agent, the 1 MiB
-- landing buffer registered and one test READ, as a resuming child does
-- them; MITOSIS's figure is the bare queue pair connection): metrics
-- `connect` (median per connection, ms), `rate` (connections/s) and, for
-- rdma, `rc_connect` (the RDMA part alone, ms).  Other sizes: `read`
-- (median per read, us) and `throughput` (MB/s, 10^6 bytes) of --reads
-- reads walking through the image.  Without an RDMA device only TCP is
-- measured, and the reason is printed.  See bindings/rfork/README.md for
-- a machine with a real RDMA NIC (KXRUN_RFORK_RDMA_DEVICE picks the port).
local lab = require "kx.lab"
local rfork = require "kx.rfork"

local exp = lab.experiment{
	name = "rdma_rc_connection",
	about = "RC connection set-up and RDMA READ latency/throughput beside TCP (kx.rfork transports)",
	params = {
		{ "size", type = "size", list = true, default = "0,4K,16K,64K,256K,1M",
		  help = "bytes per read (0: connection set-up)" },
		{ "connections", type = "int", default = 20, help = "connections set up per run" },
		{ "reads", type = "int", default = 200, help = "reads per run" },
		{ "image", type = "size", default = "64M", help = "the parent's memory the reads walk through" },
		{ "listen", type = "string", default = "127.0.0.1:0", help = "the holder's address" },
	},
	metrics = { connect = "ms", rate = "1/s", rc_connect = "ms", read = "us", throughput = "MB/s" },
	reps = 5, warmup = 1,
}
local P = exp.params
for _, s in ipairs(P.size) do
	if s % 4096 ~= 0 or s > 1 << 20 then
		io.stderr:write("rdma_rc_connection: --size: multiples of 4K up to 1M (0: connections)\n")
		os.exit(2)
	end
end

-- the image: distinct 1 MiB strings, so every page is populated
local image, chunk = {}, ("x"):rep(4096)
while #chunk < (1 << 20) do chunk = chunk .. chunk end
for i = 1, math.max(1, P.image >> 20) do image[i] = chunk:sub(1, -8) .. ("%07d"):format(i) end

local h = assert(rfork.prepare{ listen = P.listen, transport = "auto", idle = 3600 })
if h.child then os.exit(0) end   -- nothing resumes this parent
while h.rdma == "starting" do kx.sleep(0.01) end
local systems = { "tcp" }
if h.rdma == "ready" then
	systems[2] = "rdma"
	print(("rdma_rc_connection: a %d MiB image; RDMA over %s; TCP to %s"):format(#image,
		h.transport_info, h.address))
else
	print(("rdma_rc_connection: a %d MiB image; TCP only: %s"):format(#image,
		h.transport_info or "no RDMA"))
end

local function measure(transport)
	return function(p)
		local base = { address = h.address, id = h.id, key = h.key, transport = transport }
		local median = lab.stats.median
		local function sum(xs) local s = 0 for _, x in ipairs(xs) do s = s + x end return s end
		if p.size == 0 then
			base.op, base.count = "connect", p.connections
			local t, rc = rfork._bench(base)
			if not t then return nil, rc end
			local v = { connect = median(t) * 1e3, rate = #t / sum(t) }
			if transport == "rdma" then v.rc_connect = median(rc) * 1e3 end
			return v
		end
		base.op, base.size, base.count = "read", p.size, p.reads
		local t, err = rfork._bench(base)
		if not t then return nil, err end
		return { read = median(t) * 1e6, throughput = p.size * #t / sum(t) / 1e6 }
	end
end

local list = {}
for _, s in ipairs(systems) do list[#list + 1] = { s, measure(s) } end
exp:run{ systems = list }
h:close()
