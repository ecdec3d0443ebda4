# mk/integration.mk — filled in by the integration work.
