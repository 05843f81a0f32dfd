//go:build unix

package config

import (
	"io/fs"
	"syscall"
)

// fileOwner returns a file's owning uid and gid.
func fileOwner(st fs.FileInfo) (uid, gid int, ok bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(sys.Uid), int(sys.Gid), true
}
