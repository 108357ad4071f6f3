package main

import (
	"encoding/json"
	"fmt"

	"golang.org/x/sys/unix"
)

// statJSON is a unix.Stat_t as the fstat subcommand prints it (the field
// names of Python's os.stat_result without "st_").
type statJSON struct {
	Mode    uint32 `json:"mode"`
	Ino     uint64 `json:"ino"`
	Dev     uint64 `json:"dev"`
	Nlink   uint64 `json:"nlink"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Size    int64  `json:"size"`
	Rdev    uint64 `json:"rdev"`
	Blksize int64  `json:"blksize"`
	Blocks  int64  `json:"blocks"`
	AtimeNs int64  `json:"atime_ns"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

func toStatJSON(st *unix.Stat_t) statJSON {
	return statJSON{
		Mode: st.Mode, Ino: st.Ino, Dev: st.Dev, Nlink: uint64(st.Nlink),
		UID: st.Uid, GID: st.Gid, Size: st.Size, Rdev: st.Rdev,
		Blksize: int64(st.Blksize), Blocks: st.Blocks,
		AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
	}
}

// fstatCmd prints, as one JSON object {PATH: {"stat", "lstat", "fstat"}},
// the raw stat, lstat and fstat (SYS_FSTAT on an O_RDONLY descriptor, as
// os.File.Stat does) of each path.
func fstatCmd(paths []string) error {
	out := map[string]map[string]statJSON{}
	for _, p := range paths {
		var st, lst, fst unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if err := unix.Lstat(p, &lst); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = unix.Fstat(fd, &fst)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("fstat %s: %w", p, err)
		}
		out[p] = map[string]statJSON{"stat": toStatJSON(&st), "lstat": toStatJSON(&lst), "fstat": toStatJSON(&fst)}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", b)
	return nil
}
