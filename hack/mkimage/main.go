// Command mkimage builds a container image FROM scratch and writes it as a
// docker-archive tarball (the format of `docker save`, which
// `ctr -n k8s.io images import` loads). No daemon or registry is involved.
//
//	mkimage -o OUT.tar -t NAME:TAG [-t NAME:TAG...] [-entrypoint ARG...] [-cmd ARG...]
//	        [-env K=V...] [-workdir DIR] [-user USER] [-label K=V...] [-symlink PATH=TARGET...]
//	        SRC:DST[:MODE]...
//
// Each SRC:DST copies the file or directory tree SRC to DST in the image
// (MODE, octal, overrides a file's permission bits). The image has one layer
// holding these files, their parent directories, /etc and /tmp; every entry
// belongs to root and has the zero time, so the same inputs always give the
// same image digest. -entrypoint and -cmd take one argument each and may be
// repeated, or a JSON array: -entrypoint '["/coredns","-conf","/etc/Corefile"]'.
//
// Example, the agent image of the local cluster:
//
//	mkimage -o agent.tar -t tether.local/tether-agent:dev -entrypoint /tether-agent bin/tether-agent:/tether-agent
package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// defaultPath is the PATH of the image's environment unless -env sets one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec describes one image.
type Spec struct {
	Output     string
	Tags       []string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	Labels     map[string]string
	Arch       string
	Files      []File
	Symlinks   []Symlink
}

// File copies Src (a file or a directory tree) to Dst in the image. A
// non-zero Mode replaces the permission bits of the copied files.
type File struct {
	Src, Dst string
	Mode     fs.FileMode
}

// Symlink creates Path -> Target in the image.
type Symlink struct{ Path, Target string }

func main() {
	spec, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil {
		err = Build(spec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

type listFlag struct {
	vals *[]string
	json bool // a value starting with '[' is a JSON array
}

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, " ")
}

func (l listFlag) Set(s string) error {
	if l.json && strings.HasPrefix(s, "[") {
		var vs []string
		if err := json.Unmarshal([]byte(s), &vs); err != nil {
			return fmt.Errorf("not a JSON array of strings: %v", err)
		}
		*l.vals = append(*l.vals, vs...)
		return nil
	}
	*l.vals = append(*l.vals, s)
	return nil
}

func parseArgs(args []string) (*Spec, error) {
	s := &Spec{Labels: map[string]string{}}
	var labels, links []string
	fl := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mkimage -o OUT.tar -t NAME:TAG [flags] SRC:DST[:MODE]...")
		fl.PrintDefaults()
	}
	fl.StringVar(&s.Output, "o", "", "output docker-archive tarball (required)")
	fl.Var(listFlag{vals: &s.Tags}, "t", "image name:tag (required, repeatable)")
	fl.Var(listFlag{vals: &s.Entrypoint, json: true}, "entrypoint", "entrypoint argument (repeatable) or JSON array")
	fl.Var(listFlag{vals: &s.Cmd, json: true}, "cmd", "cmd argument (repeatable) or JSON array")
	fl.Var(listFlag{vals: &s.Env}, "env", "environment variable K=V (repeatable)")
	fl.StringVar(&s.WorkingDir, "workdir", "", "working directory")
	fl.StringVar(&s.User, "user", "", "user (and group) to run as, e.g. 65532:65532")
	fl.Var(listFlag{vals: &labels}, "label", "label K=V (repeatable)")
	fl.Var(listFlag{vals: &links}, "symlink", "symlink PATH=TARGET (repeatable)")
	fl.StringVar(&s.Arch, "arch", runtime.GOARCH, "image architecture")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if s.Output == "" || len(s.Tags) == 0 {
		fl.Usage()
		return nil, errors.New("-o and -t are required")
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-label %q: want K=V", l)
		}
		s.Labels[k] = v
	}
	for _, l := range links {
		p, t, ok := strings.Cut(l, "=")
		if !ok || p == "" || t == "" {
			return nil, fmt.Errorf("-symlink %q: want PATH=TARGET", l)
		}
		s.Symlinks = append(s.Symlinks, Symlink{Path: p, Target: t})
	}
	for _, e := range s.Env {
		if !strings.Contains(e, "=") {
			return nil, fmt.Errorf("-env %q: want K=V", e)
		}
	}
	for _, a := range fl.Args() {
		f, err := parseFile(a)
		if err != nil {
			return nil, err
		}
		s.Files = append(s.Files, f)
	}
	return s, nil
}

func parseFile(arg string) (File, error) {
	parts := strings.Split(arg, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !path.IsAbs(parts[1]) {
		return File{}, fmt.Errorf("%q: want SRC:DST[:MODE] with an absolute DST", arg)
	}
	f := File{Src: parts[0], Dst: parts[1]}
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m > 0o7777 {
			return File{}, fmt.Errorf("%q: MODE must be octal permission bits", arg)
		}
		f.Mode = fs.FileMode(m)
	}
	return f, nil
}

// Build writes the image described by s to s.Output.
func Build(s *Spec) error {
	tags := make(map[name.Reference]v1.Image, len(s.Tags))
	refs := make([]name.Tag, 0, len(s.Tags))
	for _, t := range s.Tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return fmt.Errorf("image name %q: %v", t, err)
		}
		refs = append(refs, ref)
	}

	// The layer is written once, gzipped, to a temporary file next to the
	// output; go-containerregistry then only reads it.
	tmp, err := os.CreateTemp(filepath.Dir(s.Output), ".mkimage-layer-*.tar.gz")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeLayer(tmp, s); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(tmp.Name())
	if err != nil {
		return err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "mkimage", Created: v1.Time{Time: time.Unix(0, 0).UTC()}},
	})
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		Env:        s.Env,
		WorkingDir: s.WorkingDir,
		User:       s.User,
	}
	if !hasEnv(s.Env, "PATH") {
		cf.Config.Env = append([]string{defaultPath}, s.Env...)
	}
	if len(s.Labels) > 0 {
		cf.Config.Labels = s.Labels
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	for _, r := range refs {
		tags[r] = img
	}
	// Write to a temporary name first: a reader never sees half a tarball.
	part := s.Output + ".part"
	if err := tarball.MultiRefWriteToFile(part, tags); err != nil {
		os.Remove(part)
		return err
	}
	return os.Rename(part, s.Output)
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// entry is one tar entry of the layer; src is the file to copy for regular files.
type entry struct {
	hdr *tar.Header
	src string
}

// writeLayer writes the layer of s as a gzipped tar to w.
func writeLayer(w io.Writer, s *Spec) error {
	entries := map[string]*entry{}
	dir := func(p string, mode int64) {
		p = strings.TrimPrefix(path.Clean(p), "/")
		if p == "" || p == "." {
			return
		}
		if e, ok := entries[p]; ok && e.hdr.Typeflag == tar.TypeDir {
			return
		}
		entries[p] = &entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}}
	}
	parents := func(p string) {
		for d := path.Dir(path.Clean(p)); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[strings.TrimPrefix(d, "/")]; !ok {
				dir(d, 0o755)
			}
		}
	}
	dir("/etc", 0o755)
	dir("/tmp", 0o1777)

	for _, f := range s.Files {
		st, err := os.Stat(f.Src)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			parents(f.Dst)
			entries[strings.TrimPrefix(path.Clean(f.Dst), "/")] = fileEntry(f.Dst, f.Src, st, f.Mode)
			continue
		}
		err = filepath.WalkDir(f.Src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(f.Src, p)
			if err != nil {
				return err
			}
			dst := path.Join(f.Dst, filepath.ToSlash(rel))
			parents(dst)
			info, err := d.Info()
			if err != nil {
				return err
			}
			key := strings.TrimPrefix(path.Clean(dst), "/")
			switch {
			case d.IsDir():
				dir(dst, int64(info.Mode().Perm()))
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				entries[key] = &entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: key, Linkname: target, Mode: 0o777}}
			case d.Type().IsRegular():
				entries[key] = fileEntry(dst, p, info, f.Mode)
			default:
				return fmt.Errorf("%s: only files, directories and symlinks can go into an image", p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, l := range s.Symlinks {
		if !path.IsAbs(l.Path) {
			return fmt.Errorf("symlink %q: the path must be absolute", l.Path)
		}
		parents(l.Path)
		key := strings.TrimPrefix(path.Clean(l.Path), "/")
		entries[key] = &entry{hdr: &tar.Header{Typeflag: tar.TypeSymlink, Name: key, Linkname: l.Target, Mode: 0o777}}
	}

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names) // parents sort before their children
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = time.Unix(0, 0)
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(e.hdr); err != nil {
			return err
		}
		if e.src == "" {
			continue
		}
		if err := copyFile(tw, e.src, e.hdr.Size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func fileEntry(dst, src string, info fs.FileInfo, mode fs.FileMode) *entry {
	m := info.Mode().Perm()
	if mode != 0 {
		m = mode
	}
	key := strings.TrimPrefix(path.Clean(dst), "/")
	return &entry{
		hdr: &tar.Header{Typeflag: tar.TypeReg, Name: key, Mode: int64(m), Size: info.Size()},
		src: src,
	}
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s changed size while it was copied", src)
	}
	return nil
}
