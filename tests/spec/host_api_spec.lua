-- The shared pieces the host gives every module and tool: kx.write_file,
-- kx.read_file, kx.mkdir, kx.tmpdir and the kxrun TOOL flag parser (kx.cli).
local cli = require "kx.cli"

local function tmpdir() return assert(kx.tmpdir("spec")) end

describe("kx.write_file", function()
	local dir
	before_each(function() dir = tmpdir() end)
	after_each(function() os.execute("rm -rf " .. dir) end)

	it("replaces a file whole and leaves nothing beside it", function()
		assert.is_true(kx.write_file(dir .. "/a", "one"))
		assert.is_true(kx.write_file(dir .. "/a", "two\0three"))
		local f = assert(io.open(dir .. "/a", "rb"))
		assert.equal("two\0three", f:read("a"))
		f:close()
		local ls = io.popen("ls -A " .. dir):read("a")
		assert.equal("a\n", ls)
	end)

	it("returns nil and a message naming the path", function()
		local ok, err = kx.write_file(dir .. "/no/such/x", "x")
		assert.is_nil(ok)
		assert.matches(dir .. "/no/such/x", err, 1, true)
		assert.matches("No such file", err)
		assert.has_error(function() kx.write_file(dir .. "/b") end)
	end)
end)

describe("kx.read_file", function()
	it("reads back what kx.write_file wrote, bytes as they are", function()
		local dir = tmpdir()
		finally(function() os.execute("rm -rf " .. dir) end)
		local data = "a\0b\r\n" .. ("x"):rep(100000)
		assert.is_true(kx.write_file(dir .. "/f", data))
		assert.equal(data, kx.read_file(dir .. "/f"))
		assert.equal("", (assert(kx.write_file(dir .. "/e", "")) and kx.read_file(dir .. "/e")))
	end)

	it("returns nil and a message naming the path", function()
		local ok, err = kx.read_file("/nonexistent/kx-read")
		assert.is_nil(ok)
		assert.equal("/nonexistent/kx-read: No such file or directory", err)
		ok, err = kx.read_file("/")
		assert.is_nil(ok)
		assert.matches("^/: ", err)
		assert.has_error(function() kx.read_file() end, "bad argument #1 to 'read_file' (string expected, got nil)")
	end)
end)

describe("kx.tmpdir", function()
	it("makes a new private directory under TMPDIR", function()
		local a, b = assert(kx.tmpdir("spec")), assert(kx.tmpdir("spec"))
		finally(function() os.remove(a); os.remove(b) end)
		assert.not_equal(a, b)
		local base = os.getenv("TMPDIR") or "/tmp"
		assert.equal(base .. "/kxrun-spec.", a:sub(1, #base + 12))
		assert.equal("700\n", select(2, kx.exec{ "stat", "-c", "%a", a }))
		local c = assert(kx.tmpdir())
		os.remove(c)
		assert.matches("^kxrun%-tmp%.", c:match("[^/]+$"))
	end)

	it("names the directory it could not create in", function()
		local _, out = kx.exec{ kx.exe, "-e", "print(kx.tmpdir('x'))", env = { TMPDIR = "/nonexistent" } }
		assert.equal("nil\tcannot create a directory in /nonexistent: No such file or directory\n", out)
		assert.has_error(function() kx.tmpdir("a/b") end)
	end)
end)

describe("kx.mkdir", function()
	local dir
	before_each(function() dir = tmpdir() end)
	after_each(function() os.execute("rm -rf " .. dir) end)

	it("makes a directory and its missing parents, and is content when it exists", function()
		local d = dir .. "/a b/'c'/d"
		assert.is_true(kx.mkdir(d))
		assert.is_true(kx.mkdir(d))
		assert.is_true(kx.mkdir(d .. "/"))
		assert.equal(0, (kx.exec{ "test", "-d", d }))
		assert.is_true(kx.mkdir(dir .. "/m", tonumber("700", 8)))
		assert.equal("700\n", select(2, kx.exec{ "stat", "-c", "%a", dir .. "/m" }))
	end)

	it("returns nil and a message naming the part that failed", function()
		assert.is_true(kx.write_file(dir .. "/file", "x"))
		local ok, err = kx.mkdir(dir .. "/file/sub/x")
		assert.is_nil(ok)
		assert.equal(dir .. "/file/sub: cannot create directory: Not a directory", err)
		ok, err = kx.mkdir(dir .. "/file")
		assert.is_nil(ok)
		assert.equal(dir .. "/file: Not a directory", err)
		assert.has_error(function() kx.mkdir(dir .. "/x", -1) end)
	end)
end)

describe("kx.cli", function()
	local out, err
	local real_out, real_err = io.stdout, io.stderr
	local function capture(main, argv)
		local o, e = {}, {}
		io.stdout = { write = function(_, ...) for _, s in ipairs{ ... } do o[#o + 1] = s end end }
		io.stderr = { write = function(_, ...) for _, s in ipairs{ ... } do e[#e + 1] = s end end }
		local ok, code = pcall(main, argv)
		io.stdout, io.stderr = real_out, real_err
		out, err = table.concat(o), table.concat(e)
		assert(ok, code)
		return code
	end

	local got
	local main = cli.tool{
		name = "demo",
		summary = "a tool for the tests",
		flags = { { "verbose", "v", type = "boolean", help = "say more" } },
		commands = {
			{ name = "go", args = { "WHERE", "[HOW]" },
			  flags = {
				{ "speed", "s", type = "number", default = 1, help = "how fast" },
				{ "mode", choices = { "a", "b" } },
				{ "tag", "t", type = "list" },
				{ "count", type = "integer", env = "KX_CLI_SPEC_COUNT" },
			  },
			  run = function(opts, args) got = { opts = opts, args = args } return 0 end },
			{ name = "exec", args = { "CMD..." },
			  flags = { { "id", required = true } },
			  run = function(opts, args) got = { opts = opts, args = args } return nil, "it failed" end },
			{ name = "check", run = function(_, _, tool) return tool:usage("give one of -c or -f") end },
		},
	}

	it("reads long, short, = and repeated flags with types and defaults", function()
		assert.equal(0, capture(main, { "go", "--speed=2.5", "-v", "-t", "x", "--tag", "y", "home" }))
		assert.same({ speed = 2.5, verbose = true, tag = { "x", "y" } }, got.opts)
		assert.same({ "home" }, got.args)
		assert.equal(0, capture(main, { "go", "-s3", "there", "fast" }))
		assert.equal(3, got.opts.speed)
		assert.same({ "there", "fast" }, got.args)
	end)

	it("takes a command after its flags verbatim, or after --", function()
		assert.equal(1, capture(main, { "exec", "--id", "7", "ls", "-l", "--color" }))
		assert.same({ "ls", "-l", "--color" }, got.args)
		assert.equal("kxrun demo: it failed\n", err)
		capture(main, { "exec", "--id=8", "--", "--weird" })
		assert.same({ "--weird" }, got.args)
	end)

	it("exits 2 with one line naming the flag for bad usage", function()
		local cases = {
			{ { "go", "--nope", "x" }, "go: unknown flag '--nope'" },
			{ { "go", "--speed", "fast", "x" }, "go: flag '--speed' wants a number, got 'fast'" },
			{ { "go", "--mode", "c", "x" }, "go: flag '--mode' wants one of a, b, got 'c'" },
			{ { "go", "x", "--speed" }, "go: flag '--speed' needs a value" },
			{ { "go" }, "go: missing WHERE" },
			{ { "go", "a", "b", "c" }, "go: unexpected argument 'c'" },
			{ { "exec", "ls" }, "exec: flag '--id' is required" },
			{ { "fly" }, "unknown command 'fly'" },
			{ {}, "missing command: one of go, exec, check" },
			{ { "check" }, "give one of -c or -f" },
		}
		for _, c in ipairs(cases) do
			assert.equal(2, capture(main, c[1]), table.concat(c[1], " "))
			assert.equal("kxrun demo: " .. c[2] .. " (see kxrun demo --help)\n", err)
		end
	end)

	it("reads a flag from its environment variable when not given", function()
		local ok = pcall(function()
			-- no setenv in Lua: run a child kxrun with the variable set
			local code, o = kx.exec{ kx.exe, "-e", [[
				local got
				local m = require("kx.cli").tool{ name = "t",
					flags = { { "count", type = "integer", env = "KX_CLI_SPEC_COUNT" } },
					run = function(opts) got = opts.count end }
				assert(m({}) == 0)
				io.write(tostring(got))]], env = { KX_CLI_SPEC_COUNT = "12" } }
			assert.equal(0, code)
			assert.equal("12", o)
		end)
		assert.is_true(ok)
	end)

	it("prints a command-less tool's help, with its text", function()
		local solo = cli.tool{ name = "solo", args = { "FILE" }, help = "reads FILE",
			flags = { { "out", "o", arg = "DIR", help = "where" } }, run = function() return 0 end }
		assert.equal(0, capture(solo, { "--help" }))
		assert.matches("usage: kxrun solo %[flags%] FILE", out)
		assert.matches("reads FILE", out, 1, true)
		assert.matches("%-o, %-%-out DIR +where", out)
		assert.has_error(function() cli.tool{ name = "x", usage = "text" } end)
	end)

	it("prints --help from the declarations and exits 0", function()
		assert.equal(0, capture(main, { "--help" }))
		assert.matches("usage: kxrun demo COMMAND", out, 1, true)
		assert.matches("\n  go %[flags%] WHERE %[HOW%]\n", out)
		assert.matches("\n  exec %-%-id VALUE %[flags%] CMD%.%.%.\n", out)
		assert.equal(0, capture(main, { "go", "--help" }))
		assert.matches("%-s, %-%-speed N +how fast %(default 1%)", out)
		assert.matches("%-v, %-%-verbose +say more", out)
		assert.matches("%-%-count N +%(%$KX_CLI_SPEC_COUNT%)", out)
		assert.equal("", err)
	end)
end)

describe("kxrun TOOL exit statuses", function()
	it("are 2 with one line on bad usage, 0 for --help, for rfork", function()
		local code, o, e = kx.exec{ kx.exe, "rfork", "resume", "a" }
		assert.equal(2, code)
		assert.equal("kxrun rfork: resume: missing ID (see kxrun rfork --help)\n", e)
		code, o = kx.exec{ kx.exe, "rfork", "--help" }
		assert.equal(0, code)
		assert.matches("resume %[flags%] ADDRESS ID KEY", o)
		code, _, e = kx.exec{ kx.exe, "rfork", "resume", "127.0.0.1:1", "1", "00" }
		assert.equal(1, code)
		assert.matches("^kxrun rfork: ", e)
	end)
end)
