package config

import (
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// processIdentity is who the process runs as: the file owner and groups a
// key file's permissions are judged against.
type processIdentity struct {
	uid    int
	groups []int // the effective gid and every supplementary group
}

// currentIdentity reads the process's effective uid and groups. A failed
// Getgroups leaves only the effective gid: that can refuse a key, never
// accept one wrongly.
func currentIdentity() processIdentity {
	id := processIdentity{uid: os.Geteuid(), groups: []int{os.Getegid()}}
	if gs, err := os.Getgroups(); err == nil {
		id.groups = append(id.groups, gs...)
	}
	return id
}

// keyFileProblem says why production refuses a private key file with these
// owner and mode bits, or "" when it may be used. st comes from os.Stat, so
// a Kubernetes Secret volume's ..data symlinks are judged by their target.
//
// Only the owner should read a private key. One exception is what a
// Kubernetes Secret volume with fsGroup produces (root:<fsGroup>, 0440): the
// group may read the key when that group is one of this process's groups
// and the owner is root or the process itself, so nobody outside the pod's
// own identity can read it. Anything readable by others is refused.
func keyFileProblem(path string, st fs.FileInfo, id processIdentity) string {
	perm := st.Mode().Perm()
	if perm&0o007 != 0 {
		return fmt.Sprintf("%s is accessible by others (mode %04o); chmod 600 it (or 0440 with a group this process is in, as a Kubernetes Secret volume with fsGroup gives)", path, perm)
	}
	if perm&0o070 == 0 {
		return ""
	}
	uid, gid, ok := fileOwner(st)
	switch {
	case !ok:
		return fmt.Sprintf("%s is accessible by its group (mode %04o) and its owner cannot be read on this platform; chmod 600 it", path, perm)
	case !slices.Contains(id.groups, gid):
		return fmt.Sprintf("%s is readable by group %d (mode %04o), which is not one of this process's groups %v; chmod 600 it, or run with that group (Kubernetes: securityContext.fsGroup)", path, gid, perm, id.groups)
	case uid != 0 && uid != id.uid:
		return fmt.Sprintf("%s is readable by its group (mode %04o) and owned by uid %d, neither root nor this process (uid %d); chown it or chmod 600 it", path, perm, uid, id.uid)
	}
	return ""
}
