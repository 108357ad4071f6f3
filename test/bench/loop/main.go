// Command loop is the workload of tether's data-plane benchmarks: it times
// a syscall or request loop from inside the process, so start-up costs do
// not blur per-operation figures.
//
//	loop open N PATH     N x open+close of PATH: "ns_per_op=X"
//	loop stat N PATH     N x stat of PATH: "ns_per_op=X"
//	loop fstat N PATH    N x fstat of one open fd of PATH: "ns_per_op=X"
//	loop get N URL       N x (new TCP connection + HTTP GET + close):
//	                     "min_us=X p50_us=Y p99_us=Z"
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: loop open|stat|fstat|get N ARG")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "loop: N must be a positive number")
		os.Exit(2)
	}
	arg := os.Args[3]
	switch os.Args[1] {
	case "open":
		err = perOp(n, func() error {
			fd, err := syscall.Open(arg, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err == nil {
				syscall.Close(fd)
			}
			return err
		})
	case "stat":
		var st syscall.Stat_t
		err = perOp(n, func() error { return syscall.Stat(arg, &st) })
	case "fstat":
		var fd int
		if fd, err = syscall.Open(arg, syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err == nil {
			var st syscall.Stat_t
			err = perOp(n, func() error { return syscall.Fstat(fd, &st) })
		}
	case "get":
		err = gets(n, arg)
	default:
		err = fmt.Errorf("unknown loop %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loop:", err)
		os.Exit(1)
	}
}

func perOp(n int, op func() error) error {
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := op(); err != nil {
			return err
		}
	}
	fmt.Printf("ns_per_op=%d\n", time.Since(start).Nanoseconds()/int64(n))
	return nil
}

func gets(n int, url string) error {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}}
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	fmt.Printf("min_us=%d p50_us=%d p99_us=%d\n", lat[0].Microseconds(), lat[len(lat)/2].Microseconds(), lat[len(lat)*99/100].Microseconds())
	return nil
}
