// wasicmd: a WASI command in C (wasi-libc) for the command-mode tests.
// Like programs built by Zig, TinyGo or Rust's std, it indexes argv[0] and
// traps when the host starts it without one (argc = 0).
//
// It prints "argv0=", "arg=" and "env=" lines, then runs the actions in its
// arguments, in order:
//   --cat PATH       print the file (exit 66, EX_NOINPUT, when it cannot)
//   --write PATH     create PATH and write "x" (exit 73, EX_CANTCREAT)
//   --fill PATH N    write N bytes to PATH (exit 74, EX_IOERR, when refused)
//   --stdin          copy stdin to stdout
//   --exit N         exit with code N
//
// Build (make wasm): clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all wasicmd.c -o wasicmd.wasm
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
	if (argc < 1) __builtin_trap(); // "index out of range" in Zig and TinyGo
	printf("argv0=%s\n", argv[0]);
	for (int i = 1; i < argc; i++) printf("arg=%s\n", argv[i]);
	for (char **e = environ; e && *e; e++) printf("env=%s\n", *e);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cat") && i + 1 < argc) {
			FILE *f = fopen(argv[++i], "r");
			if (!f) {
				fprintf(stderr, "cannot open %s: %s\n", argv[i], strerror(errno));
				return 66;
			}
			char buf[4096];
			size_t n;
			while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
			fclose(f);
		} else if (!strcmp(argv[i], "--write") && i + 1 < argc) {
			FILE *f = fopen(argv[++i], "w");
			if (!f || fputs("x", f) < 0 || fclose(f) != 0) {
				fprintf(stderr, "cannot write %s: %s\n", argv[i], strerror(errno));
				return 73;
			}
			printf("wrote %s\n", argv[i]);
		} else if (!strcmp(argv[i], "--fill") && i + 2 < argc) {
			const char *path = argv[++i];
			long n = atol(argv[++i]);
			FILE *f = fopen(path, "w");
			if (!f) {
				fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
				return 73;
			}
			setvbuf(f, NULL, _IONBF, 0);
			char block[1024];
			memset(block, 'z', sizeof block);
			for (long done = 0; done < n;) {
				size_t k = n - done < (long)sizeof block ? (size_t)(n - done) : sizeof block;
				if (fwrite(block, 1, k, f) != k) {
					fprintf(stderr, "write %s failed after %ld bytes: %s\n", path, done, strerror(errno));
					return 74;
				}
				done += k;
			}
			fclose(f);
			printf("filled %s with %ld bytes\n", path, n);
		} else if (!strcmp(argv[i], "--stdin")) {
			char buf[4096];
			size_t n;
			while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
		} else if (!strcmp(argv[i], "--exit") && i + 1 < argc) {
			exit(atoi(argv[++i]));
		}
	}
	return 0;
}
