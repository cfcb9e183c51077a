/*
 * main.c - the kxrun command line: like lua(1), with a loop underneath.
 *
 *   kxrun [options] [script [args]]      kxrun TOOL [args]
 *
 * The script's main chunk (after every -e and -l, in order) runs as a task;
 * kxrun exits when it returns and no task is left.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

void kx_push_tools(lua_State *L);

static const char usage_text[] =
	"usage: kxrun [options] [script [args]]\n"
	"       kxrun TOOL [args]   (TOOL --help for its own options)\n"
	"Options:\n"
	"  -e CODE        run CODE\n"
	"  -l MOD         require MOD into a global (G=MOD names it; the\n"
	"                 default is the last part: -l kx.trace sets 'trace')\n"
	"  -i             enter the REPL after running the script\n"
	"  -              run the script read from standard input\n"
	"  -v, --version  print the version\n"
	"  -h, --help     print this help\n"
	"  --             stop handling options\n"
	"With no script on a terminal, kxrun starts the REPL.\n"
	"Environment:\n"
	"  KXRUN_PATH     extra directories searched by require (a:b:c)\n"
	"  KXRUN_STDLIB   load the stdlib from this directory, not the binary\n"
	"  KXRUN_LIBDIR   where the helper libraries (libkx*.so) are\n"
	"  KXRUN_STATE_DIR  state of kx.gpu and kx.vtime\n"
	"  KXRUN_HISTORY  REPL history file (default ~/.kxrun_history)\n"
	"  KXRUN_LOG      debug|info|warn|error (kx.log threshold)\n"
	"  KXRUN_PROGRESS 0 turns progress lines off\n";


static void print_usage(FILE *f)
{
	fputs(usage_text, f);
	lua_State *L = kx_host.L;
	kx_push_tools(L);
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	if (n > 0) {
		fputs("Built-in tools:", f);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, i);
			fprintf(f, " %s", lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		fputc('\n', f);
	}
	lua_pop(L, 1);
}

static void print_version(void)
{
	printf("kxrun %s (%s, libuv %s)\n", KX_VERSION, LUA_RELEASE,
	       uv_version_string());
}

/* The main task's body: -e and -l steps, then the script or the tool. */
static const char driver[] =
	"local steps, script, args, tool = ...\n"
	"for i = 1, #steps do\n"
	"  local s = steps[i]\n"
	"  if type(s) == 'function' then s()\n"
	"  else _G[s.global] = require(s.module) end\n"
	"end\n"
	"if tool then\n"
	"  local main = require('kx.tools.' .. tool)\n"
	"  if type(main) ~= 'function' then\n"
	"    error(\"tool '\" .. tool .. \"' does not return a function\", 0)\n"
	"  end\n"
	"  return main(args)\n"
	"elseif script then\n"
	"  return script(table.unpack(args, 1, args.n))\n"
	"end\n";

/* A script to run: anything but a directory (a folder called "gpu" in the
 * current directory does not hide `kxrun gpu`). */
static int file_exists(const char *p)
{
	struct stat st;
	if (stat(p, &st) != 0)
		return 0;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		return 0;
	}
	return 1;
}

/* A child resumed from a REPL line runs that line to its end, promptless. */
static void repl_resumed(void *ud)
{
	(void)ud;
	kx_repl_after_resume();
}

int main(int argc, char **argv)
{
	int interactive = 0, want_version = 0, script_at = 0, tool = 0;
	int i;
	/* called `chronos` (a link to kxrun): `kxrun gpu`, so that the Chronos
	 * user guide's commands run as written */
	const char *base = strrchr(argv[0], '/');
	int chronos = strcmp(base ? base + 1 : argv[0], "chronos") == 0;

	/* a module's command that must not wait for the host (kx.h) */
	for (int (*const *early)(int, char **) = kx_early_mains; *early; early++) {
		int code = (*early)(argc, argv);
		if (code >= 0)
			return code;
	}

	lua_State *L = kx_host_init();
	if (!L) {
		fprintf(stderr, "kxrun: cannot create the Lua state\n");
		return 1;
	}
	kx_on_resume(repl_resumed, NULL);
	kx_host.on_interrupt = kx_repl_interrupt;

	/* options, as lua(1) takes them */
	lua_newtable(L);   /* steps */
	int steps = lua_gettop(L), nsteps = 0;
	for (i = 1; i < argc && !chronos; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			script_at = i;
			break;
		}
		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc)
				script_at = i + 1;
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			kx_setup_package(L, NULL);
			print_usage(stdout);
			return 0;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
			want_version = 1;
		} else if (strcmp(a, "-i") == 0) {
			interactive = 1;
		} else if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "kxrun: '%s' needs an argument\n", a);
				kx_setup_package(L, NULL);
				print_usage(stderr);
				return 1;
			}
			const char *v = argv[++i];
			if (a[1] == 'e') {
				if (luaL_loadbuffer(L, v, strlen(v),
						    "=(command line)") != LUA_OK) {
					kx_report(lua_tostring(L, -1));
					return 1;
				}
			} else {
				const char *eq = strchr(v, '=');
				const char *dot = strrchr(v, '.');
				lua_createtable(L, 0, 2);
				if (eq) {
					lua_pushlstring(L, v, (size_t)(eq - v));
					lua_setfield(L, -2, "global");
					lua_pushstring(L, eq + 1);
				} else {
					lua_pushstring(L, dot ? dot + 1 : v);
					lua_setfield(L, -2, "global");
					lua_pushstring(L, v);
				}
				lua_setfield(L, -2, "module");
			}
			lua_rawseti(L, steps, ++nsteps);
		} else {
			fprintf(stderr, "kxrun: unrecognized option '%s'\n", a);
			kx_setup_package(L, NULL);
			print_usage(stderr);
			return 1;
		}
	}
	if (want_version)
		print_version();

	const char *script = script_at ? argv[script_at] : NULL;
	kx_setup_package(L, script);

	/* arg: arg[0] the script, positive indices its arguments */
	lua_createtable(L, argc - script_at, script_at + 1);
	for (i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script_at);
	}
	lua_setglobal(L, "arg");

	/* the kx module, loaded and global */
	luaL_requiref(L, "kx", luaopen_kx, 1);
	lua_pop(L, 1);

	int stdin_script = 0;
	if (!script && nsteps == 0 && !want_version && !interactive && !chronos) {
		if (isatty(0))
			interactive = 1;
		else
			stdin_script = 1;
	}

	/* the main task's function and arguments */
	if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=[kxrun]") != LUA_OK)
		return 1;
	lua_pushvalue(L, steps);
	if (chronos || (script && !file_exists(script) &&
	    strcmp(script, "-") != 0 && kx_has_tool(L, script))) {
		tool = 1;
		lua_pushnil(L);
	} else if (script || stdin_script) {
		const char *path = (!script || strcmp(script, "-") == 0) ? NULL : script;
		if (path && !file_exists(path)) {
			fprintf(stderr, "kxrun: cannot open %s (%s)\n", path,
				strerror(errno));
			return 1;
		}
		if (luaL_loadfile(L, path) != LUA_OK) {
			kx_report(lua_tostring(L, -1));
			return 1;
		}
	} else {
		lua_pushnil(L);
	}
	/* args of the script (or the tool) */
	int first = chronos ? 1 : script_at ? script_at + 1 : argc;
	lua_createtable(L, argc - first, 1);
	for (i = first; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - first + 1);
	}
	lua_pushinteger(L, argc - first);
	lua_setfield(L, -2, "n");
	if (tool)
		lua_pushstring(L, chronos ? "gpu" : script);
	else
		lua_pushnil(L);

	kx_host.repl = interactive;
	kx_set_main(kx_go(L, 4, 0));
	lua_pop(L, 1);   /* steps */
	kx_host.main_is_tool = tool;

	kx_run_loops();
	int code = kx_host.exit_code;
	if (!kx_host.stopping && !kx_task_finished(kx_host.main)) {
		kx_report("deadlock: the main task waits for something that "
			  "can no longer happen");
		code = 1;
	} else if (!code) {
		code = kx_main_status();
	}
	if (interactive && !kx_host.loop_gen) {  /* a resumed child: no prompt */
		kx_host.stopping = 0;
		code = kx_repl(L);
	}
	kx_shutdown(code);
	return code;
}
