// Command ip-info tells what it knows about an IP address: GET /IP answers
// one line. It stands in for a geo-IP service the demo app calls. Every
// answer names the host (the pod) that gave it in an X-Served-By header.
package main

import (
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"os"
	"strings"
)

func main() {
	addr := ":" + envOr("PORT", "8080")
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", host)
		ip, err := netip.ParseAddr(strings.TrimPrefix(r.URL.Path, "/"))
		switch {
		case err != nil:
			http.Error(w, "not an IP address", http.StatusBadRequest)
		case ip.IsLoopback():
			fmt.Fprintf(w, "%v: loopback\n", ip)
		case ip.IsPrivate():
			fmt.Fprintf(w, "%v: private network (cluster)\n", ip)
		default:
			fmt.Fprintf(w, "%v: public internet\n", ip)
		}
	})
	log.Printf("ip-info listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
