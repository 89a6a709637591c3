package app

import "embed"

// Templates and Static are the page's templates and assets, embedded; the
// web package serves them.
var (
	//go:embed templates/*.html
	Templates embed.FS
	//go:embed static
	Static embed.FS
)
