package rabbitmq

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/tether-dev/tether/internal/queue"
)

// fail makes err a *queue.Error about op, with hint or, if that is empty,
// one derived from err.
func (b *Broker) fail(op string, err error, hint string) error {
	return queue.Fail(queue.KindRabbitMQ, b.addr, op, err, hint, b.hint)
}

// hint says what a user can do about err.
func (b *Broker) hint(err error) string {
	switch {
	case isCode(err, amqp.AccessRefused):
		return "the broker refuses tether-operator's user: grant it configure, write and read on the queue and its tether- copies in the vhost"
	case isCode(err, amqp.NotAllowed), isCode(err, amqp.InvalidPath):
		return "check the vhost in the QueueSplit's url and that its user may use it"
	}
	if _, ok := errors.AsType[*amqp.Error](err); ok && !errors.Is(err, amqp.ErrClosed) {
		return "" // the broker answered; its error says it
	}
	return fmt.Sprintf("check the QueueSplit's url (%s) and that tether-operator can reach it", b.addr)
}

// isCode says whether err is the broker's AMQP error code.
func isCode(err error, code int) bool {
	ae, ok := errors.AsType[*amqp.Error](err)
	return ok && ae.Code == code
}

// notFound is the error about queue name, which does not exist.
func (b *Broker) notFound(op, name string, err error) error {
	return b.fail(op, queue.NotFound("queue", name, err),
		fmt.Sprintf("the app declares queue %s: check that it ran and that the QueueSplit names the queue right", name))
}
