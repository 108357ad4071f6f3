package rabbitmq

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

// PropertyPrefix starts the filter name of a message property:
// "property:message-id" is the message's message-id (AMQP 0-9-1's names:
// content-type, content-encoding, delivery-mode, priority,
// correlation-id, reply-to, expiration, message-id, timestamp, type,
// user-id, app-id).
const PropertyPrefix = "property:"

// fromDelivery is d as a queue.Message: its headers as text for filters,
// then its properties; Meta keeps everything else a copy needs.
func fromDelivery(d *amqp.Delivery) queue.Message {
	m := queue.Message{
		Value:    d.Body,
		Position: fmt.Sprintf("delivery %d", d.DeliveryTag),
		Ack:      d.DeliveryTag,
		Meta: amqp.Publishing{
			Headers:         d.Headers,
			ContentType:     d.ContentType,
			ContentEncoding: d.ContentEncoding,
			DeliveryMode:    d.DeliveryMode,
			Priority:        d.Priority,
			CorrelationId:   d.CorrelationId,
			ReplyTo:         d.ReplyTo,
			Expiration:      d.Expiration,
			MessageId:       d.MessageId,
			Timestamp:       d.Timestamp,
			Type:            d.Type,
			UserId:          d.UserId,
			AppId:           d.AppId,
		},
	}
	if d.Redelivered {
		m.Position += " (redelivered)"
	}
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		m.Headers = append(m.Headers, queue.Header{Key: k, Value: []byte(text(d.Headers[k]))})
	}
	prop := func(name, v string) {
		if v != "" {
			m.Headers = append(m.Headers, queue.Header{Key: PropertyPrefix + name, Value: []byte(v)})
		}
	}
	prop("content-type", d.ContentType)
	prop("content-encoding", d.ContentEncoding)
	if d.DeliveryMode != 0 {
		prop("delivery-mode", strconv.Itoa(int(d.DeliveryMode)))
	}
	if d.Priority != 0 {
		prop("priority", strconv.Itoa(int(d.Priority)))
	}
	prop("correlation-id", d.CorrelationId)
	prop("reply-to", d.ReplyTo)
	prop("expiration", d.Expiration)
	prop("message-id", d.MessageId)
	if !d.Timestamp.IsZero() {
		prop("timestamp", d.Timestamp.UTC().Format(time.RFC3339))
	}
	prop("type", d.Type)
	prop("user-id", d.UserId)
	prop("app-id", d.AppId)
	return m
}

// text is a header value as a filter sees it.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// toPublishing is m as published: exactly as received when it came from
// RabbitMQ, else its value with its headers (properties set from the
// property: ones), persistent.
func toPublishing(m *queue.Message) amqp.Publishing {
	if p, ok := m.Meta.(amqp.Publishing); ok {
		p.Body = m.Value
		return p
	}
	p := amqp.Publishing{Body: m.Value, DeliveryMode: amqp.Persistent}
	for _, h := range m.Headers {
		name, isProp := strings.CutPrefix(h.Key, PropertyPrefix)
		v := string(h.Value)
		if !isProp {
			if p.Headers == nil {
				p.Headers = amqp.Table{}
			}
			p.Headers[h.Key] = v
			continue
		}
		switch name {
		case "content-type":
			p.ContentType = v
		case "content-encoding":
			p.ContentEncoding = v
		case "correlation-id":
			p.CorrelationId = v
		case "reply-to":
			p.ReplyTo = v
		case "expiration":
			p.Expiration = v
		case "message-id":
			p.MessageId = v
		case "type":
			p.Type = v
		case "user-id":
			p.UserId = v
		case "app-id":
			p.AppId = v
		}
	}
	return p
}
