/*
 * `dais master`: the cluster's front door (src/master/master.h). Reads the configuration
 * from flags and DAIS_* variables (src/master/config.c), binds every port, runs until
 * SIGINT/SIGTERM. Exit status: 0 after a clean shutdown, 2 for a configuration error, 1 when
 * the master cannot start (a port in use, no memory).
 */
#include "common/log.h"
#include "master/config.h"
#include "master/master.h"

#include <stdio.h>
#include <sys/resource.h>

int dais_cmd_master(int argc, char **argv);

int dais_cmd_master(int argc, char **argv)
{
    dais_master_config cfg;
    dais_master_config_default(&cfg);
    dais_err err;
    dais_err_clear(&err);
    int rc = dais_master_config_parse(&cfg, argc, argv, &err);
    if (rc == 1) {
        dais_master_config_usage(stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "dais master: %s\n", err.msg);
        return 2;
    }
    dais_log_init(cfg.node_id, cfg.log_level, cfg.log_format);
    /* Every client and worker connection is a descriptor: allow as many as the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    dais_master *m = dais_master_new(&cfg, &err);
    if (m == NULL) {
        DAIS_ERROR("cannot start: %s", err.msg);
        return 1;
    }
    rc = dais_master_run(m);
    dais_master_free(m);
    DAIS_INFO("stopped");
    return rc == 0 ? 0 : 1;
}
