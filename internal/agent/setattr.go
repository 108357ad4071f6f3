package agent

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// setattr applies req.Attr to req.Path: mode, owner, times, size, in that
// order, stopping at the first failure (as the separate syscalls would).
func (f fileOps) setattr(req protocol.Request) protocol.Response {
	a := req.Attr
	if a == nil {
		return protocol.ErrorResponse(errors.New("setattr without attributes"))
	}
	rel, err := f.open(req.Path, !req.NoFollow, true)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	if a.Mode != nil {
		if err := f.root.Chmod(rel, fs.FileMode(*a.Mode&0o777)|modeExtras(*a.Mode)); err != nil {
			return protocol.ErrorResponse(err)
		}
	}
	if a.Uid != nil || a.Gid != nil {
		uid, gid := -1, -1
		if a.Uid != nil {
			uid = int(*a.Uid)
		}
		if a.Gid != nil {
			gid = int(*a.Gid)
		}
		chown := f.root.Chown
		if req.NoFollow {
			chown = f.root.Lchown
		}
		if err := chown(rel, uid, gid); err != nil {
			return protocol.ErrorResponse(err)
		}
	}
	if a.Atime != nil || a.Mtime != nil || a.AtimeNow || a.MtimeNow {
		// A zero time leaves that time unchanged (os.Chtimes).
		at := timeOf(a.Atime, a.AtimeNow)
		mt := timeOf(a.Mtime, a.MtimeNow)
		if err := f.root.Chtimes(rel, at, mt); err != nil {
			return protocol.ErrorResponse(err)
		}
	}
	if a.Size != nil {
		file, err := f.root.OpenFile(rel, os.O_WRONLY, 0)
		if err != nil {
			return protocol.ErrorResponse(err)
		}
		err = file.Truncate(*a.Size)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return protocol.ErrorResponse(err)
		}
	}
	return protocol.Response{}
}

func timeOf(ns *int64, now bool) time.Time {
	switch {
	case now:
		return time.Now()
	case ns != nil:
		return time.Unix(0, *ns)
	}
	return time.Time{}
}

// modeExtras converts the setuid/setgid/sticky bits of a st_mode to Go's.
func modeExtras(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// symlink makes req.Path a symbolic link to req.Target.
func (f fileOps) symlink(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, false, true)
	if err == nil {
		err = f.root.Symlink(req.Target, rel)
	}
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{}
}

// link makes req.NewPath a hard link to req.Path.
func (f fileOps) link(req protocol.Request) protocol.Response {
	from, err := f.open(req.Path, !req.NoFollow, true)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	to, err := f.open(req.NewPath, false, true)
	if err == nil {
		err = f.root.Link(from, to)
	}
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{}
}
