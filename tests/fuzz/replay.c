/*
 * Corpus replay driver: links with one fuzz target (LLVMFuzzerTestOneInput) when the build
 * is not a libFuzzer build, and feeds it every file of the directories or files given on the
 * command line. A crash or sanitizer report fails the test; a clean pass prints the count.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) == 0) n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
            if (run_file(p) == 0) n++;
        }
        if (d != NULL) closedir(d);
    }
    /* Also exercise a few degenerate inputs every time. */
    static const uint8_t zeros[64];
    LLVMFuzzerTestOneInput(zeros, 0);
    LLVMFuzzerTestOneInput(zeros, 1);
    LLVMFuzzerTestOneInput(zeros, sizeof(zeros));
    printf("replayed %d corpus inputs\n", n);
    return 0;
}
