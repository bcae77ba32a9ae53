//go:build !unix

package lockfile

import "os"

// Without flock the lock is advisory only in name: other platforms run one
// process per data directory by convention.
func lock(*os.File) error   { return nil }
func unlock(*os.File) error { return nil }
