package main

import (
	"context"
	"fmt"
	"log"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumeRabbitMQ consumes RABBITMQ_QUEUE until ctx is done, acknowledging
// each visit once logged; it reconnects when the connection breaks.
func consumeRabbitMQ(ctx context.Context) error {
	url := envOr("RABBITMQ_URL", "amqp://guest:guest@rabbitmq:5672/")
	queue := envOr("RABBITMQ_QUEUE", "ip-visits")
	for ctx.Err() == nil {
		err := consumeRabbitMQOnce(ctx, url, queue)
		if ctx.Err() != nil {
			break
		}
		log.Printf("rabbitmq: %v (again in 1s)", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func consumeRabbitMQOnce(ctx context.Context, url, queue string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring queue %s: %w", queue, err)
	}
	if err := ch.Qos(50, 0, false); err != nil {
		return err
	}
	ds, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming queue %s: %w", queue, err)
	}
	log.Printf("consuming %s from RabbitMQ", queue)
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-ds:
			if !ok {
				return fmt.Errorf("the channel closed")
			}
			user, _ := d.Headers["x-tether-user"].(string)
			logVisit(d.Body, user)
			if err := d.Ack(false); err != nil {
				return err
			}
		}
	}
}
