package main

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// consumeKafka consumes KAFKA_TOPIC in KAFKA_GROUP until ctx is done, then
// commits what it logged and leaves the group.
func consumeKafka(ctx context.Context) error {
	brokers := strings.Split(envOr("KAFKA_BROKERS", "kafka:9092"), ",")
	topic := envOr("KAFKA_TOPIC", "ip-visits")
	group := envOr("KAFKA_GROUP", "ip-visit-consumer")
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group), kgo.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer c.Close()
	log.Printf("consuming %s from %v in group %s", topic, brokers, group)
	for ctx.Err() == nil {
		fs := c.PollFetches(ctx)
		fs.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				log.Printf("fetch %s/%d: %v", t, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			user := ""
			for _, h := range r.Headers {
				if h.Key == "x-tether-user" {
					user = string(h.Value)
				}
			}
			logVisit(r.Value, user)
		})
	}
	return nil
}
