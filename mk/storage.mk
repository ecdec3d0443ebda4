# mk/storage.mk — filled in by the storage work.
