// Command benchserver is the HTTP server of tether's Kubernetes benchmarks:
// the deployed app of the bench deployment (image tether.local/tether-bench:dev)
// and the local program of each stealing session. It speaks HTTP/1.1 and
// h2c with prior knowledge (for h2load) on one port.
//
//	benchserver [-listen :8080] [-who NAME]
//
//	GET /small        a 3-byte body ("ok\n")
//	GET /bytes?n=N    N bytes (Content-Length set), for throughput
//	GET /healthz      200, for readiness probes
//	GET /burn?us=N    "ok\n" after burning N µs of CPU time (a handler
//	                  that computes, as a typical app's does)
//	ANY /slow?ms=N    "ok\n" after N milliseconds (the request body is read
//	                  first), a slow request for the handover tests
//
// Every answer carries "X-Who: NAME", so the benchmarks can check who
// answered a request (the deployed app or a session's local program).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

// chunk is what /bytes writes, over and over.
var chunk = make([]byte, 256<<10)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	who := flag.String("who", "pod", "value of the X-Who header of every answer")
	flag.Parse()
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Who", *who)
		w.Header().Set("Content-Length", "3")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Who", *who)
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		us, err := strconv.Atoi(r.URL.Query().Get("us"))
		if err != nil || us < 0 || us > 1e6 {
			http.Error(w, "want /burn?us=MICROSECONDS (at most 1000000)", http.StatusBadRequest)
			return
		}
		burn(time.Duration(us) * time.Microsecond)
		w.Header().Set("X-Who", *who)
		w.Header().Set("Content-Length", "3")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			http.Error(w, "want /slow?ms=NUMBER", http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, r.Body)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		w.Header().Set("X-Who", *who)
		w.Header().Set("Content-Length", "3")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want /bytes?n=NUMBER", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Who", *who)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			b := chunk[:min(n, int64(len(chunk)))]
			if _, err := w.Write(b); err != nil {
				return
			}
			n -= int64(len(b))
		}
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("benchserver %s listening on %s\n", *who, ln.Addr())
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "benchserver: serving on %s: %v\n", ln.Addr(), err)
		os.Exit(1)
	}
}

// sink keeps burn's work from being optimized away.
var sink uint64

// burn spends d of this thread's CPU time (not wall time: on a loaded
// machine the handler still costs the same CPU per request).
func burn(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	x := sink | 1
	for threadCPU()-start < d {
		for range 200 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
	sink = x
}
