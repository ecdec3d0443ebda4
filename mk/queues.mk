# mk/queues.mk — queues/ and locks/ namespace modules (issue 4). Owner: queues.
