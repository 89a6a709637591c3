package sqlite

// What the store's tests (package sqlite_test) see of its insides.
var (
	MigrationFS    = migrationFS
	PepperedPrefix = pepperedPrefix
)
