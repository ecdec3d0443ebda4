# mk/services.mk — the services/ namespace module (issue 11): service registry with health
# checks and load balancing. Owner: services.
SM_SRCS       += fs/services_sm.c
SM_UNIT_TESTS += test_services
FS_SRCS       += fs/services_fuse.c
TEST_CMDS     += tests/integration/services.sh
