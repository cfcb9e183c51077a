/*
 * embed ROOT FILE... - writes a C file holding each Lua file as source text,
 * named by module: ROOT/kx/trace.lua -> "kx.trace", ROOT/kx/init.lua -> "kx".
 * Source (not bytecode) keeps FILE:LINE in error messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void modname(const char *root, const char *path, char *out, size_t n)
{
	size_t rl = strlen(root);
	const char *p = path;
	if (strncmp(p, root, rl) == 0 && p[rl] == '/')
		p += rl + 1;
	snprintf(out, n, "%s", p);
	char *dot = strrchr(out, '.');
	if (dot && strcmp(dot, ".lua") == 0)
		*dot = 0;
	size_t l = strlen(out);
	if (l >= 5 && strcmp(out + l - 5, "/init") == 0)
		out[l - 5] = 0;
	for (char *c = out; *c; c++)
		if (*c == '/')
			*c = '.';
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: embed ROOT FILE...\n");
		return 2;
	}
	printf("#include <stddef.h>\n#include \"stdlib_embed.h\"\n");
	for (int i = 2; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		printf("static const char src%d[] = {", i);
		int c;
		size_t k = 0;
		while ((c = fgetc(f)) != EOF)
			printf("%s%d,", (k++ % 24) ? "" : "\n", c);
		printf("0};\n");
		fclose(f);
	}
	printf("const struct kx_embedded kx_stdlib[] = {\n");
	for (int i = 2; i < argc; i++) {
		char name[512];
		modname(argv[1], argv[i], name, sizeof name);
		printf("  {\"%s\", \"@%s\", src%d, sizeof src%d - 1},\n", name,
		       argv[i] + strlen(argv[1]) + 1, i, i);
	}
	printf("  {NULL, NULL, NULL, 0}};\n");
	return 0;
}
