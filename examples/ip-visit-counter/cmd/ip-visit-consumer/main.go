// Command ip-visit-consumer logs the visits ip-visit-counter publishes to
// Kafka (KAFKA_BROKERS, KAFKA_TOPIC), one line per visit.
package main

import (
	"context"
	"log"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := strings.Split(envOr("KAFKA_BROKERS", "kafka:9092"), ",")
	topic := envOr("KAFKA_TOPIC", "ip-visits")
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup("ip-visit-consumer"), kgo.AllowAutoTopicCreation())
	if err != nil {
		log.Fatalf("kafka: %v", err)
	}
	defer c.Close()
	log.Printf("consuming %s from %v", topic, brokers)
	for {
		fs := c.PollFetches(context.Background())
		fs.EachError(func(t string, p int32, err error) { log.Printf("fetch %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) { log.Printf("visit: %s", r.Value) })
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
