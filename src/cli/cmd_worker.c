/*
 * `dais worker`: parses the options (flags and DAIS_* variables, worker/config.h) and runs the
 * worker node (worker/worker.h) until a signal or a fatal error.
 */
#include "worker/config.h"
#include "worker/worker.h"

#include <stdio.h>
#include <stdlib.h>

int dais_cmd_worker(int argc, char **argv);

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

int dais_cmd_worker(int argc, char **argv)
{
    static dais_worker_config cfg; /* large (paths, token): keep it off the stack */
    dais_err err;
    dais_err_clear(&err);
    int rc = dais_worker_config_parse(&cfg, argc, argv, env_lookup, stdout, &err);
    if (rc == 1) return 0;
    if (rc != 0) {
        fprintf(stderr, "dais worker: %s\n", err.msg);
        return 2;
    }
    return dais_worker_run(&cfg);
}
