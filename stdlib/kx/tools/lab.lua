-- kxrun lab: a lab's library of experiment helpers, shared as a luarocks rock.
local ROCKSPEC = [[
-- The rock of the lab library @NAME@ (luarocks: https://luarocks.org).
-- Add a line to build.modules for each new file under lua/.
rockspec_format = "3.0"
package = "@NAME@"
version = "0.1-1"
source = {
	-- where the lab publishes it (luarocks make and pack do not fetch it)
	url = "git+https://example.org/your-lab/@NAME@.git",
	tag = "v0.1",
}
description = {
	summary = "@NAME@: experiment helpers shared across labs (kxrun, kx.lab)",
	detailed = "Run its experiments with kxrun (kxrun experiments/example.lua --help).",
}
dependencies = {
	"lua >= 5.4",
}
build = {
	type = "builtin",
	modules = {
		["@NAME@"] = "lua/@NAME@/init.lua",
		["@NAME@.timing"] = "lua/@NAME@/timing.lua",
	},
}
]]

local INIT = [[
-- @NAME@: this lab's experiment helpers.  require "@NAME@" under kxrun.
local M = {
	version = "0.1",
	timing = require "@NAME@.timing",
}

return M
]]

local TIMING = [[
-- @NAME@.timing: measuring commands.
local M = {}

-- Runs argv to its end; returns its wall-clock time in ms, or nil and a
-- message when it cannot start or exits with a status other than 0.
function M.run_ms(argv)
	local t0 = kx.now()
	local code, _, err = kx.exec(argv)
	local ms = (kx.now() - t0) * 1e3
	if code == nil then return nil, err end
	if code ~= 0 then
		return nil, ("%s exited with %d: %s"):format(argv[1], code, (tostring(err):gsub("%s+$", "")))
	end
	return ms
end

return M
]]

local EXAMPLE = [[
-- experiments/example.lua: how long a few programs take to start and end,
-- measured with @NAME@.timing, swept and repeated by kx.lab.
--   kxrun experiments/example.lua --help
--   kxrun experiments/example.lua --program=true,ls --reps 10
local lab = require "kx.lab"
local timing = require("@NAME@").timing

local exp = lab.experiment{
	name = "example",
	about = "Start-to-end time of short programs (@NAME@.timing.run_ms)",
	params = {
		{ "program", type = "string", default = "true,date", list = true, help = "programs to run" },
	},
	metrics = { time = "ms" },
	reps = 5,
}

exp:run{
	measure = function(p) return timing.run_ms{ p.program } end,
}
]]

local README = [[
# @NAME@

Experiment helpers of our lab, for [kxrun](https://example.org/kxrun) and
its experiment library `kx.lab`.

    lua/@NAME@/init.lua       require "@NAME@"
    lua/@NAME@/timing.lua     require "@NAME@.timing"
    experiments/example.lua   an experiment using them
    @NAME@-0.1-1.rockspec     the rock (list each module in build.modules)

Develop without installing:

    KXRUN_PATH=$PWD/lua kxrun experiments/example.lua --reps 3

Pack it into a rock and install it (per user: ~/.luarocks, which kxrun
searches):

    luarocks --lua-version 5.4 make --pack-binary-rock @NAME@-0.1-1.rockspec
    luarocks --lua-version 5.4 --local install @NAME@-0.1-1.all.rock

Into another tree (`--tree DIR`), tell kxrun where it is with either

    KXRUN_PATH=DIR/share/lua/5.4 kxrun experiment.lua
    eval "$(luarocks --lua-version 5.4 --tree DIR path)"; kxrun experiment.lua

Then any experiment, in any directory, can `require "@NAME@"`.
]]

local function write(path, text)
	local f = io.open(path, "r")
	if f then f:close() return nil, path .. " exists (not overwritten)" end
	return kx.write_file(path, text)
end

local function new(opts, args, tool)
	local name = args[1]
	if not name:match("^%a[%w_]*$") then
		return tool:usage(("%q is not a Lua module name (letters, digits, _; a letter first)"):format(name))
	end
	local dir = args[2] or name
	for _, d in ipairs{ dir .. "/lua/" .. name, dir .. "/experiments" } do
		local ok, err = kx.mkdir(d)
		if not ok then return nil, err end
	end
	local files = {
		{ ("%s-0.1-1.rockspec"):format(name), ROCKSPEC },
		{ ("lua/%s/init.lua"):format(name), INIT },
		{ ("lua/%s/timing.lua"):format(name), TIMING },
		{ "experiments/example.lua", EXAMPLE },
		{ "README.md", README },
	}
	for _, f in ipairs(files) do
		local ok, werr = write(dir .. "/" .. f[1], (f[2]:gsub("@NAME@", name)))
		if not ok then return nil, werr end
		print(dir .. "/" .. f[1])
	end
	return 0
end

return require("kx.cli").tool{
	name = "lab",
	summary = "A lab's library of experiment helpers, shared as a luarocks rock.",
	commands = {
		{
			name = "new",
			args = { "NAME", "[DIR]" },
			summary = "write DIR (default ./NAME), a lab library ready to share as a rock",
			help = [[
  NAME-0.1-1.rockspec        the rock: version, dependencies, its modules
  lua/NAME/init.lua          require "NAME"
  lua/NAME/timing.lua        require "NAME.timing" (an example helper)
  experiments/example.lua    an experiment that uses it with kx.lab
  README.md                  how to develop, pack, install and use it
NAME: a Lua module name (letters, digits, _; a letter first).  Existing files
are not overwritten.  Then, in DIR:
  KXRUN_PATH=$PWD/lua kxrun experiments/example.lua --reps 3
  luarocks --lua-version 5.4 make --pack-binary-rock NAME-0.1-1.rockspec
  luarocks --lua-version 5.4 --local install NAME-0.1-1.all.rock
and any experiment, anywhere, can `require "NAME"` under kxrun.]],
			run = new,
		},
	},
}
