/*
 * The `dais` subcommands. Each is `int dais_cmd_NAME(int argc, char **argv)` where argv[0] is
 * the subcommand's own name; it returns the process exit status. main.c dispatches by name.
 */
#ifndef DAIS_CLI_COMMANDS_H
#define DAIS_CLI_COMMANDS_H

typedef int (*dais_cmd_fn)(int argc, char **argv);

typedef struct dais_command {
    const char *name;
    dais_cmd_fn fn;
    const char *summary;
} dais_command;

#endif
