package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func loadImage(t *testing.T, path, tag string) v1.Image {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("load %s from %s: %v", tag, path, err)
	}
	return img
}

type tarEntry struct {
	typ     byte
	mode    int64
	content string
	link    string
}

func layerEntries(t *testing.T, img v1.Image) map[string]tarEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]tarEntry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d, want epoch and root", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = tarEntry{typ: h.Typeflag, mode: h.Mode, content: string(b), link: h.Linkname}
	}
	return got
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app"), "binary", 0o755)
	writeFile(t, filepath.Join(dir, "conf/a.json"), "{}", 0o600)
	writeFile(t, filepath.Join(dir, "conf/sub/b.txt"), "b", 0o644)
	if err := os.Symlink("a.json", filepath.Join(dir, "conf/link")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	spec, err := parseArgs([]string{
		"-o", out, "-t", "tether.local/app:dev", "-t", "tether.local/app:v1",
		"-entrypoint", `["/usr/bin/app","--flag"]`, "-cmd", "serve", "-cmd", "-v",
		"-env", "A=1", "-workdir", "/srv", "-user", "65532", "-label", "k=v",
		"-symlink", "/bin/app=/usr/bin/app",
		filepath.Join(dir, "app") + ":/usr/bin/app",
		filepath.Join(dir, "conf") + ":/etc/app:0640",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Build(spec); err != nil {
		t.Fatal(err)
	}

	for _, tag := range []string{"tether.local/app:dev", "tether.local/app:v1"} {
		img := loadImage(t, out, tag)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := v1.Config{
			Entrypoint: []string{"/usr/bin/app", "--flag"},
			Cmd:        []string{"serve", "-v"},
			Env:        []string{defaultPath, "A=1"},
			WorkingDir: "/srv",
			User:       "65532",
			Labels:     map[string]string{"k": "v"},
		}
		if !reflect.DeepEqual(cf.Config, want) {
			t.Errorf("%s config:\n got %+v\nwant %+v", tag, cf.Config, want)
		}
		if cf.OS != "linux" || cf.Architecture == "" {
			t.Errorf("os/arch %s/%s", cf.OS, cf.Architecture)
		}
	}

	got := layerEntries(t, loadImage(t, out, "tether.local/app:dev"))
	want := map[string]tarEntry{
		"etc/":              {typ: tar.TypeDir, mode: 0o755},
		"tmp/":              {typ: tar.TypeDir, mode: 0o1777},
		"usr/":              {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/":          {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/app":       {typ: tar.TypeReg, mode: 0o755, content: "binary"},
		"bin/":              {typ: tar.TypeDir, mode: 0o755},
		"bin/app":           {typ: tar.TypeSymlink, mode: 0o777, link: "/usr/bin/app"},
		"etc/app/":          {typ: tar.TypeDir, mode: 0o755},
		"etc/app/a.json":    {typ: tar.TypeReg, mode: 0o640, content: "{}"},
		"etc/app/link":      {typ: tar.TypeSymlink, mode: 0o777, link: "a.json"},
		"etc/app/sub/":      {typ: tar.TypeDir, mode: 0o755},
		"etc/app/sub/b.txt": {typ: tar.TypeReg, mode: 0o640, content: "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer:\n got %v\nwant %v", got, want)
	}
}

var time1 = time.Unix(1700000000, 0)

func TestBuildIsReproducible(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app"), "binary", 0o755)
	digest := func(out string) v1.Hash {
		err := Build(&Spec{Output: out, Tags: []string{"tether.local/app:dev"}, Entrypoint: []string{"/app"},
			Files: []File{{Src: filepath.Join(dir, "app"), Dst: "/app"}}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := loadImage(t, out, "tether.local/app:dev").Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	first := digest(filepath.Join(dir, "1.tar"))
	if err := os.Chtimes(filepath.Join(dir, "app"), time1, time1); err != nil {
		t.Fatal(err)
	}
	if second := digest(filepath.Join(dir, "2.tar")); first != second {
		t.Errorf("same inputs, different digests: %s, %s", first, second)
	}
	if _, err := os.Stat(filepath.Join(dir, "1.tar.part")); !os.IsNotExist(err) {
		t.Errorf("temporary output left behind: %v", err)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-t", "a.local/x:1", "f:/f"},             // no -o
		{"-o", "x.tar", "f:/f"},                   // no -t
		{"-o", "x.tar", "-t", "a.local/x:1", "f"}, // no DST
		{"-o", "x.tar", "-t", "a.local/x:1", "f:rel"},
		{"-o", "x.tar", "-t", "a.local/x:1", "f:/f:999"},
		{"-o", "x.tar", "-t", "a.local/x:1", "-entrypoint", "[not json"},
		{"-o", "x.tar", "-t", "a.local/x:1", "-env", "NOEQUALS"},
		{"-o", "x.tar", "-t", "a.local/x:1", "-symlink", "/a"},
	} {
		if _, err := parseArgs(args); err == nil {
			t.Errorf("parseArgs(%q): no error", args)
		}
	}
}

func TestBuildBadTag(t *testing.T) {
	err := Build(&Spec{Output: filepath.Join(t.TempDir(), "x.tar"), Tags: []string{"UPPER/case:x"}})
	if err == nil {
		t.Error("no error for an invalid image name")
	}
}
