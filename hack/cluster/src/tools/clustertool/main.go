// Command clustertool is the one program in the smoke test image of the local
// cluster (hack/cluster/smoke.sh). The image has nothing else, so it is also
// the client, the "sleep" of idle pods and the agent-style probe:
//
//	clustertool serve [ADDR]     HTTP server (default :8080): "hello from HOST path=P"
//	clustertool get URL          HTTP GET; prints the body, fails on a non-2xx status
//	clustertool lookup NAME      resolves NAME with the pod's /etc/resolv.conf
//	clustertool findpid ID       PIDs whose /proc/PID/cgroup contains ID (a container ID)
//	clustertool sleep            waits until SIGTERM/SIGINT
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	arg := func(i int) string {
		if len(os.Args) <= i {
			usage()
		}
		return os.Args[i]
	}
	var err error
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		err = serve(addr)
	case "get":
		err = get(arg(2))
	case "lookup":
		err = lookup(arg(2))
	case "findpid":
		err = findPID(arg(2))
	case "sleep":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertool:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clustertool serve [ADDR] | get URL | lookup NAME | findpid CONTAINER_ID | sleep")
	os.Exit(2)
}

func serve(addr string) error {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s path=%s\n", host, r.URL.Path)
	})
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Println("listening on", addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func get(url string) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func lookup(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	fmt.Println(strings.Join(addrs, "\n"))
	return nil
}

// findPID prints "PID COMM" for every process whose cgroup path contains id:
// how an agent with hostPID finds the processes of a container.
func findPID(id string) error {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return err
	}
	found := false
	for _, d := range dirs {
		cg, err := os.ReadFile(d + "/cgroup")
		if err != nil || !strings.Contains(string(cg), id) {
			continue
		}
		comm, _ := os.ReadFile(d + "/comm")
		fmt.Printf("%s %s\n", filepath.Base(d), strings.TrimSpace(string(comm)))
		found = true
	}
	if !found {
		return fmt.Errorf("no process in a cgroup matching %q", id)
	}
	return nil
}
