/* fs/cli_cluster.h — `quorumfs cluster SUBCOMMAND ...`: commands that talk to a running
 * cluster over the network instead of mounting. */
#ifndef QFS_FS_CLI_CLUSTER_H
#define QFS_FS_CLI_CLUSTER_H

/* Runs `quorumfs cluster` with argv[0..argc) the words after "cluster". Returns the
 * process exit status: 0 done, 1 the cluster could not be asked, 2 usage. */
int cli_cluster(int argc, char **argv);

#endif
