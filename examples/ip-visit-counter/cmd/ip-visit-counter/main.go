// Command ip-visit-counter is the demo service of tether's README (the
// application of the talk tether was created from): it answers with the
// caller's IP and how often that IP has visited (a counter in Redis), a
// text read from a file in the pod, and what the ip-info service says about
// the IP; it publishes each visit to Kafka for ip-visit-consumer, with
// the request's x-tether-user header as a message header (what queue
// splitting routes by) and its x-visit-id header as the visit's id.
//
// Configuration comes from the environment, as in a pod:
//
//	REDIS_ADDR       host:port of Redis (default redis:6379)
//	IPINFO_URL       base URL of ip-info (default http://ip-info)
//	KAFKA_BROKERS    comma-separated brokers (default kafka:9092)
//	KAFKA_TOPIC      topic for visits (default ip-visits)
//	RESPONSE_FILE    file whose text starts every answer (default /app/response.txt)
//	GREETING         appended to the text (default "hi")
//	PORT             listen port (default 8080)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type server struct {
	redis    string
	ipinfo   string
	file     string
	greeting string
	kafka    *kgo.Client
	topic    string
}

func main() {
	s := &server{
		redis:    env("REDIS_ADDR", "redis:6379"),
		ipinfo:   env("IPINFO_URL", "http://ip-info"),
		file:     env("RESPONSE_FILE", "/app/response.txt"),
		greeting: env("GREETING", "hi"),
		topic:    env("KAFKA_TOPIC", "ip-visits"),
	}
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "--greeting=") {
		s.greeting = strings.TrimPrefix(os.Args[1], "--greeting=")
	}
	if brokers := env("KAFKA_BROKERS", "kafka:9092"); brokers != "none" {
		k, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.AllowAutoTopicCreation(),
			kgo.ProduceRequestTimeout(5*time.Second))
		if err != nil {
			log.Fatalf("kafka: %v", err)
		}
		s.kafka = k
	}
	addr := ":" + env("PORT", "8080")
	log.Printf("ip-visit-counter listening on %s (redis %s, ip-info %s, response file %s)", addr, s.redis, s.ipinfo, s.file)
	log.Fatal(http.ListenAndServe(addr, s))
}

// Answer is the service's JSON response.
type Answer struct {
	// ID is the request's x-visit-id header, if it has one.
	ID     string `json:"id,omitempty"`
	IP     string `json:"ip"`
	Count  int64  `json:"count"`
	Text   string `json:"text"`
	IPInfo string `json:"ip_info"`
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		fmt.Fprintln(w, "ok")
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	count, err := incr(s.redis, "visits:"+ip)
	if err != nil {
		http.Error(w, "redis: "+err.Error(), http.StatusBadGateway)
		return
	}
	text, err := os.ReadFile(s.file)
	if err != nil {
		http.Error(w, "response file: "+err.Error(), http.StatusInternalServerError)
		return
	}
	a := Answer{ID: r.Header.Get("x-visit-id"), IP: ip, Count: count, Text: strings.TrimSpace(string(text)) + " " + s.greeting, IPInfo: s.lookup(r.Context(), ip)}
	if s.kafka != nil {
		b, _ := json.Marshal(a)
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		rec := &kgo.Record{Topic: s.topic, Value: b}
		// Whose visit it is: queue splitting routes by this header.
		if u := r.Header.Get("x-tether-user"); u != "" {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "x-tether-user", Value: []byte(u)})
		}
		if err := s.kafka.ProduceSync(ctx, rec).FirstErr(); err != nil {
			log.Printf("kafka: %v", err)
		}
		cancel()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

func (s *server) lookup(ctx context.Context, ip string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.ipinfo+"/"+ip, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return strings.TrimSpace(string(b))
}

// incr runs Redis INCR key over RESP and returns the new value.
func incr(addr, key string) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", len(key), key)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, ":"):
		return strconv.ParseInt(line[1:], 10, 64)
	case strings.HasPrefix(line, "-"):
		return 0, errors.New(line[1:])
	}
	return 0, fmt.Errorf("unexpected reply %q", line)
}
