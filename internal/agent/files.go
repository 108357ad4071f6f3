package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/tether-dev/tether/internal/protocol"
)

// maxSymlinks is the kernel's limit on symlinks followed in one lookup.
const maxSymlinks = 40

// resolve walks p inside root the way the kernel does for a chrooted
// process: absolute symlinks restart at the root, ".." stops at the root.
// When follow is false the last component is not followed. The result is a
// clean relative path with no symlinks in its directories, ready for os.Root
// (which refuses absolute symlinks as escapes).
func resolve(root *os.Root, p string, follow bool) (string, error) {
	var done []string
	todo := splitPath(p)
	hops := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := path.Join(append(done, name)...)
		if len(todo) == 0 && !follow {
			done = append(done, name)
			break
		}
		fi, err := root.Lstat(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && len(todo) == 0 {
				// A missing last component is fine (create, or ENOENT later).
				done = append(done, name)
				break
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(todo) > 0 && !fi.IsDir() {
				return "", syscall.ENOTDIR
			}
			done = append(done, name)
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", syscall.ELOOP
		}
		target, err := root.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func statOf(fi fs.FileInfo) *protocol.Stat {
	st := &protocol.Stat{Mode: modeBits(fi.Mode()), Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Mode = s.Mode
		st.Uid, st.Gid = s.Uid, s.Gid
		st.Nlink = uint64(s.Nlink)
		st.Ino, st.Dev, st.Rdev = s.Ino, s.Dev, s.Rdev
		st.Blksize, st.Blocks = int64(s.Blksize), s.Blocks
		st.Atime = s.Atim.Nano()
		st.Mtime = s.Mtim.Nano()
		st.Ctime = s.Ctim.Nano()
	}
	return st
}

// modeBits converts a Go FileMode to st_mode bits.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	switch {
	case m.IsDir():
		b |= syscall.S_IFDIR
	case m&fs.ModeSymlink != 0:
		b |= syscall.S_IFLNK
	case m&fs.ModeNamedPipe != 0:
		b |= syscall.S_IFIFO
	case m&fs.ModeSocket != 0:
		b |= syscall.S_IFSOCK
	case m&fs.ModeCharDevice != 0:
		b |= syscall.S_IFCHR
	case m&fs.ModeDevice != 0:
		b |= syscall.S_IFBLK
	default:
		b |= syscall.S_IFREG
	}
	if m&fs.ModeSetuid != 0 {
		b |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		b |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		b |= syscall.S_ISVTX
	}
	return b
}

// fileOps serves the file requests of one stream against root.
type fileOps struct {
	root *os.Root
	ss   *session // whose policies apply (nil: none)
}

// open resolves p inside the root (see resolve) and applies the
// session's policies to it, for writing or not.
func (f fileOps) open(p string, follow, write bool) (string, error) {
	rel, err := resolve(f.root, p, follow)
	if err != nil {
		return "", err
	}
	if f.ss != nil {
		if err := f.checkFile(p, rel, write); err != nil {
			return "", err
		}
	}
	return rel, nil
}

func (f fileOps) stat(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, !req.NoFollow, false)
	if err != nil {
		return protocol.ErrorResponse(fmt.Errorf("stat %s: %w", req.Path, err))
	}
	fi, err := f.root.Lstat(rel)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{Stat: statOf(fi)}
}

func (f fileOps) readdir(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, true, false)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	d, err := f.root.Open(rel)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	defer d.Close()
	des, err := d.ReadDir(-1)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	// After the listing, which may have touched the directory's atime: a
	// stat of the path right after must say the same.
	fi, err := d.Stat()
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	resp := protocol.Response{Stat: statOf(fi), Entries: make([]protocol.DirEntry, 0, len(des))}
	for _, de := range des {
		if f.ss != nil && (f.hidden(req.Path, de.Name()) || f.hidden(rel, de.Name())) {
			continue
		}
		resp.Entries = append(resp.Entries, protocol.DirEntry{Name: de.Name(), Mode: modeBits(de.Type())})
	}
	return resp
}

func (f fileOps) readlink(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, false, false)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	t, err := f.root.Readlink(rel)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{Target: t}
}

// read answers with the file's stat, then streams exactly Stat.Size bytes.
func (f fileOps) read(req protocol.Request, w io.Writer) error {
	rel, err := f.open(req.Path, true, false)
	if err != nil {
		return protocol.WriteFrame(w, protocol.ErrorResponse(err))
	}
	file, err := f.root.Open(rel)
	if err != nil {
		return protocol.WriteFrame(w, protocol.ErrorResponse(err))
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return protocol.WriteFrame(w, protocol.ErrorResponse(err))
	}
	if fi.IsDir() {
		return protocol.WriteFrame(w, protocol.ErrorResponse(syscall.EISDIR))
	}
	st := statOf(fi)
	if !fi.Mode().IsRegular() {
		// Devices and FIFOs would block or never end: refuse honestly.
		return protocol.WriteFrame(w, protocol.Response{Errno: int(syscall.EOPNOTSUPP), Error: "not a regular file", Stat: st})
	}
	if err := protocol.WriteFrame(w, protocol.Response{Stat: st}); err != nil {
		return err
	}
	n, err := io.CopyN(w, file, st.Size)
	if err != nil {
		return fmt.Errorf("sending %s (%d of %d bytes): %w", req.Path, n, st.Size, err)
	}
	return nil
}

// write replaces the file's content with the req.Size bytes that follow
// the request frame (creating it with req.Perm when absent).
func (f fileOps) write(req protocol.Request, r io.Reader) protocol.Response {
	rel, err := f.open(req.Path, true, true)
	if err != nil {
		io.CopyN(io.Discard, r, req.Size)
		return protocol.ErrorResponse(err)
	}
	perm := fs.FileMode(req.Perm & 0o7777)
	if perm == 0 {
		perm = 0o644
	}
	file, err := f.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		io.CopyN(io.Discard, r, req.Size)
		return protocol.ErrorResponse(err)
	}
	n, err := io.CopyN(file, r, req.Size)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return protocol.ErrorResponse(fmt.Errorf("writing %s (%d of %d bytes): %w", req.Path, n, req.Size, err))
	}
	return protocol.Response{}
}

func (f fileOps) mkdir(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, false, true)
	if err == nil {
		perm := fs.FileMode(req.Perm & 0o7777)
		if perm == 0 {
			perm = 0o755
		}
		err = f.root.Mkdir(rel, perm)
	}
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{}
}

func (f fileOps) remove(req protocol.Request) protocol.Response {
	rel, err := f.open(req.Path, false, true)
	if err == nil {
		err = f.root.Remove(rel)
	}
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{}
}

func (f fileOps) rename(req protocol.Request) protocol.Response {
	from, err := f.open(req.Path, false, true)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	to, err := f.open(req.NewPath, false, true)
	if err != nil {
		return protocol.ErrorResponse(err)
	}
	if err := f.root.Rename(from, to); err != nil {
		return protocol.ErrorResponse(err)
	}
	return protocol.Response{}
}
