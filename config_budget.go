package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// Per-user write budget (docs/PROTOCOL.md §8). A person saving as they
// type makes a few writes a second; the burst covers the page sending the
// changes it queued while offline, or a paste of many notes. The quota is
// far beyond what a person writes by hand, and bounds what one account
// can make a node store.
const (
	defaultWriteRate     = 20
	defaultWriteBurst    = 100
	defaultMaxNotes      = 10_000
	defaultMaxNotesBytes = 20_000_000 // 20 MB
)

// budgetFlags defines the write budget's flags on fs, and returns what
// reads them once parsed. Given neither as flag nor variable, the rate
// budget and the count of notes are lifted on a -benchmark node, whose
// load tool writes thousands of notes a second through a few users.
func (c *config) budgetFlags(fs *flag.FlagSet, env func(name, def string) string) func() error {
	rate := fs.String("write-rate", env("WRITE_RATE", ""), fmt.Sprintf("note writes one user may make per second, on average; past it, 429 (env WRITE_RATE; default %d, 0 with -benchmark; 0: no limit)", defaultWriteRate))
	burst := fs.String("write-burst", env("WRITE_BURST", strconv.Itoa(defaultWriteBurst)), "note writes one user may make at once before -write-rate applies (env WRITE_BURST)")
	notes := fs.String("max-notes-per-user", env("MAX_NOTES_PER_USER", ""), fmt.Sprintf("notes one user may keep; past it, 413 (env MAX_NOTES_PER_USER; default %d, 0 with -benchmark; 0: no limit)", defaultMaxNotes))
	bytes := fs.String("max-bytes-per-user", env("MAX_BYTES_PER_USER", strconv.Itoa(defaultMaxNotesBytes)), "bytes of note bodies one user may keep; past it, 413 (env MAX_BYTES_PER_USER; 0: no limit)")
	return func() error {
		lifted := func(s string, def int) string {
			if strings.TrimSpace(s) != "" {
				return s
			}
			if c.Benchmark {
				return "0"
			}
			return strconv.Itoa(def)
		}
		var err error
		if c.WriteRate, err = parseCount(lifted(*rate, defaultWriteRate), "-write-rate (WRITE_RATE)"); err != nil {
			return err
		}
		if c.WriteBurst, err = parseCount(*burst, "-write-burst (WRITE_BURST)"); err != nil {
			return err
		}
		if c.WriteRate > 0 && c.WriteBurst < 1 {
			return fmt.Errorf("invalid -write-burst (WRITE_BURST) %q: want 1 or more with -write-rate", *burst)
		}
		if c.MaxNotesPerUser, err = parseCount(lifted(*notes, defaultMaxNotes), "-max-notes-per-user (MAX_NOTES_PER_USER)"); err != nil {
			return err
		}
		c.MaxBytesPerUser, err = parseCount(*bytes, "-max-bytes-per-user (MAX_BYTES_PER_USER)")
		return err
	}
}
