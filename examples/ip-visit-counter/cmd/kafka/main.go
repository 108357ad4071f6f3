// Command kafka runs franz-go's kfake, an in-process Kafka-compatible
// broker, as the demo's Kafka (one pod, no ZooKeeper, nothing to pull). It
// is a test broker, not for production data.
//
//	PORT       listen port (default 9092)
//	ADVERTISE  host clients should connect to (default: the pod's hostname)
package main

import (
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// advertised listens on every address but tells clients (through Addr,
// which kfake puts in metadata) to come back to host:port.
type advertised struct {
	net.Listener
	addr hostPort
}

type hostPort string

func (h hostPort) Network() string { return "tcp" }
func (h hostPort) String() string  { return string(h) }

func (a advertised) Addr() net.Addr { return a.addr }

func main() {
	port := 9092
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil {
		port = p
	}
	host := os.Getenv("ADVERTISE")
	if host == "" {
		host, _ = os.Hostname()
	}
	listen := func(network, _ string) (net.Listener, error) {
		l, err := net.Listen(network, ":"+strconv.Itoa(port))
		if err != nil {
			return nil, err
		}
		return advertised{Listener: l, addr: hostPort(net.JoinHostPort(host, strconv.Itoa(port)))}, nil
	}
	c, err := kfake.NewCluster(kfake.Ports(port), kfake.ListenFn(listen), kfake.SeedTopics(1, "ip-visits"), kfake.AllowAutoTopicCreation())
	if err != nil {
		log.Fatalf("kfake: %v", err)
	}
	defer c.Close()
	log.Printf("kafka (kfake) listening on :%d, advertising %s", port, c.ListenAddrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
