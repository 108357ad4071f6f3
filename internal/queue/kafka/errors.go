package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tether-dev/tether/internal/queue"
)

// ErrGroupActive is wrapped by Ack's error when the brokers refuse the
// commit because the consumer group has members: something else still
// consumes the topic with that group.
var ErrGroupActive = errors.New("the consumer group is still consumed by its members")

// fail makes err a *queue.Error about op, with hint or, if that is empty,
// one derived from err.
func (b *Broker) fail(op string, err error, hint string) error {
	if errors.Is(err, context.DeadlineExceeded) && !isKafka(err) {
		err = fmt.Errorf("the brokers did not answer in time: %w", err)
	}
	return queue.Fail(queue.KindKafka, b.addrs, op, err, hint, b.hint)
}

// hint says what a user can do about err.
func (b *Broker) hint(err error) string {
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed):
		return "the brokers refuse tether-operator's client: grant it access to the topic and its consumer group"
	case errors.Is(err, kerr.TopicDeletionDisabled):
		return "the brokers do not allow deleting topics (delete.topic.enable=false): delete it by hand"
	}
	if isKafka(err) {
		return "" // the brokers answered; their error says it
	}
	return fmt.Sprintf("check the QueueSplit's brokers (%s) and that tether-operator can reach them", b.addrs)
}

// isKafka says whether err is one the brokers answered with.
func isKafka(err error) bool {
	_, ok := errors.AsType[*kerr.Error](err)
	return ok
}

// notFound is the error about topic, which does not exist.
func (b *Broker) notFound(op, topic string, err error) error {
	return b.fail(op, queue.NotFound("topic", topic, err),
		fmt.Sprintf("the app creates topic %s: check that it ran and that the QueueSplit names the topic right", topic))
}

// groupActive says whether err is a broker refusing an offset commit
// outside the group because the group has members.
func groupActive(err error) bool {
	for _, e := range []error{kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.RebalanceInProgress, kerr.StaleMemberEpoch, kerr.FencedMemberEpoch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
