// Command ip-visit-consumer logs the visits ip-visit-counter publishes, one
// line per visit ("visit: JSON", then the message's x-tether-user header
// if it has one), from Kafka (the demo's), RabbitMQ or SQS:
//
//	QUEUE_KIND     kafka (default), rabbitmq or sqs
//
//	KAFKA_BROKERS  comma-separated brokers (default kafka:9092)
//	KAFKA_TOPIC    topic (default ip-visits)
//	KAFKA_GROUP    consumer group (default ip-visit-consumer)
//
//	RABBITMQ_URL   AMQP URL (default amqp://guest:guest@rabbitmq:5672/)
//	RABBITMQ_QUEUE queue, declared durable if missing (default ip-visits)
//
//	SQS_QUEUE_URL  queue URL (default http://goaws:4100/000000000000/ip-visits)
//	AWS_REGION     region (default us-east-1); requests are unsigned
//	SQS_EMULATOR   goaws: speak the query protocol goaws takes
//
// Stopped (SIGTERM, SIGINT), it acknowledges what it logged and stops
// consuming: the next consumer starts after it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch kind := envOr("QUEUE_KIND", "kafka"); kind {
	case "kafka":
		err = consumeKafka(ctx)
	case "rabbitmq":
		err = consumeRabbitMQ(ctx)
	case "sqs":
		err = consumeSQS(ctx)
	default:
		log.Fatalf("QUEUE_KIND %q: want kafka, rabbitmq or sqs", kind)
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("stopped")
}

// logVisit logs one visit and the user it is from; a visit that says
// when it was sent ("sent": Unix nanoseconds, make bench's) also gets how
// long it took to come (this pod and the sender share the node's clock).
func logVisit(body []byte, user string) {
	if user != "" {
		user = " x-tether-user=" + user
	}
	var v struct {
		Sent int64 `json:"sent"`
	}
	if json.Unmarshal(body, &v) == nil && v.Sent > 0 {
		user += fmt.Sprintf(" latency_us=%d", (time.Now().UnixNano()-v.Sent)/1000)
	}
	log.Printf("visit: %s%s", body, user)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
