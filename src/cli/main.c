/*
 * The `dais` binary: one executable, one subcommand per job (generate, model, master,
 * worker, run …). This file only dispatches; each command lives in src/cli/cmd_*.c.
 */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

int dais_cmd_generate(int argc, char **argv);
int dais_cmd_model(int argc, char **argv);

int dais_cmd_master(int argc, char **argv);
int dais_cmd_run(int argc, char **argv);
int dais_cmd_worker(int argc, char **argv);

/* Add one line here (and the prototype above it) per subcommand. */
static const dais_command commands[] = {
    {"generate", dais_cmd_generate, "generate text from a prompt with a local GGUF model"},
    {"model", dais_cmd_model, "inspect a GGUF model (info) or write a synthetic one (synth)"},
    {"master", dais_cmd_master, "run the master: HTTP API, worker registry, heartbeats, routing"},
    {"run", dais_cmd_run, "start a master and N workers on this machine (one command demo)"},
    {"worker", dais_cmd_worker, "run a worker: load a model, join the master, serve inference"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "dais %s (%s) — distributed LLM serving\n\nusage: dais COMMAND [options]\n\n",
            DAIS_VERSION, DAIS_GIT_COMMIT);
    for (const dais_command *c = commands; c->name != NULL; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\n'dais COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("dais %s (%s)\n", DAIS_VERSION, DAIS_GIT_COMMIT);
        return 0;
    }
    for (const dais_command *c = commands; c->name != NULL; c++)
        if (strcmp(argv[1], c->name) == 0) return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "dais: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
