# mk/jobs.mk — the jobs/ namespace module (issue 12, docs/JOBS.md): scheduled and on-demand
# jobs with exactly-once runs. Owner: jobs.
SM_SRCS       += fs/cron.c fs/jobs_sm.c
SM_UNIT_TESTS += test_cron test_jobs
FS_SRCS       += fs/jobs_fuse.c
TEST_CMDS     += tests/integration/jobs.sh
# The long cases (tests/integration/jobs_soak.sh, about 3 minutes): @every 1s for 60 s on
# the embedded node, and kill -9 of the scheduler on tools/cluster up 3.
.PHONY: soak-jobs
soak-jobs: all
	QUORUMFS=$(BUILD)/quorumfs bash tests/integration/jobs_soak.sh
BENCH_CMDS    += "tools/bench-jobs --build $(BUILD)"
