package operator

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/queue"
	"github.com/tether-dev/tether/internal/queue/kafka"
	"github.com/tether-dev/tether/internal/queue/rabbitmq"
	"github.com/tether-dev/tether/internal/queue/sqs"
)

// BrokerSettings are a queue's broker settings, resolved (kafka: brokers;
// rabbitmq: url; sqs: endpoint, region, accessKeyID, secretAccessKey,
// emulator).
type BrokerSettings map[string]string

// OpenBroker connects to a broker of kind with settings.
type OpenBroker func(kind string, settings BrokerSettings) (queue.Broker, error)

// openBroker is the real OpenBroker.
func openBroker(kind string, s BrokerSettings) (queue.Broker, error) {
	switch kind {
	case queue.KindKafka:
		var brokers []string
		for b := range strings.SplitSeq(s["brokers"], ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		return kafka.New(kafka.Config{Brokers: brokers, ClientID: "tether-operator"})
	case queue.KindRabbitMQ:
		return rabbitmq.New(rabbitmq.Config{URL: s["url"], Name: "tether-operator"})
	case queue.KindSQS:
		return sqs.New(sqs.Config{Region: s["region"], Endpoint: s["endpoint"], AccessKeyID: s["accessKeyID"],
			SecretAccessKey: s["secretAccessKey"], GoAWS: s["emulator"] == "goaws"})
	}
	return nil, fmt.Errorf("tether-operator cannot split %s queues", kind)
}

func (o *Operator) open(kind string, s BrokerSettings) (queue.Broker, error) {
	if o.OpenBroker != nil {
		return o.OpenBroker(kind, s)
	}
	return openBroker(kind, s)
}

// brokerSettings resolves q's broker settings; c is the workload's
// container (for values fromEnv).
func (o *Operator) brokerSettings(ctx context.Context, ns string, q queuesv1.SplitQueue, c *corev1.Container) (BrokerSettings, error) {
	s := BrokerSettings{}
	set := func(key string, v *queuesv1.Value) error {
		if v == nil {
			return nil
		}
		val, err := o.value(ctx, ns, v, c)
		if err != nil {
			return fmt.Errorf("queue %q: %s: %w", q.ID, key, err)
		}
		s[key] = val
		return nil
	}
	var err error
	switch {
	case q.Kafka != nil:
		if err = set("brokers", &q.Kafka.Brokers); err == nil {
			var bs []string
			for b := range strings.SplitSeq(s["brokers"], ",") {
				if b = strings.TrimSpace(b); b != "" {
					bs = append(bs, o.qualify(b, ns))
				}
			}
			s["brokers"] = strings.Join(bs, ",")
		}
	case q.RabbitMQ != nil:
		if err = set("url", &q.RabbitMQ.URL); err == nil {
			s["url"] = o.qualifyURL(s["url"], ns)
		}
	case q.SQS != nil:
		for _, kv := range []struct {
			k string
			v *queuesv1.Value
		}{{"endpoint", q.SQS.Endpoint}, {"region", &q.SQS.Region}, {"accessKeyID", q.SQS.AccessKeyID}, {"secretAccessKey", q.SQS.SecretAccessKey}} {
			if err = set(kv.k, kv.v); err != nil {
				break
			}
		}
		if err == nil {
			s["endpoint"] = o.qualifyURL(s["endpoint"], ns)
			s["emulator"] = q.SQS.Emulator
		}
	}
	return s, err
}

// value resolves v.
func (o *Operator) value(ctx context.Context, ns string, v *queuesv1.Value, c *corev1.Container) (string, error) {
	switch {
	case v.ConfigMapKeyRef != nil:
		return o.configMapKey(ctx, ns, v.ConfigMapKeyRef.Name, v.ConfigMapKeyRef.Key)
	case v.SecretKeyRef != nil:
		return o.secretKey(ctx, ns, v.SecretKeyRef.Name, v.SecretKeyRef.Key)
	case v.FromEnv != "":
		val, _, err := o.envValue(ctx, ns, c, v.FromEnv)
		return val, err
	case v.Value != "":
		return v.Value, nil
	}
	return "", fmt.Errorf("no value: set value, configMapKeyRef, secretKeyRef or fromEnv")
}

// qualify makes host:port, as the workload in ns names it, a name the
// operator (in its own namespace) resolves to the same: a bare name
// (a Service of ns) gets ns's service domain.
func (o *Operator) qualify(hostport, ns string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || strings.Contains(host, ".") || net.ParseIP(host) != nil || host == "localhost" {
		return hostport
	}
	domain := "cluster.local"
	if o.DNS != nil && o.DNS.Domain != "" {
		domain = o.DNS.Domain
	}
	return net.JoinHostPort(host+"."+ns+".svc."+domain, port)
}

// qualifyURL is raw (a broker URL as the workload in ns names it) with its
// host qualified like qualify's; a URL it cannot parse is left as it is,
// for the broker's own error.
func (o *Operator) qualifyURL(raw, ns string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	host, port := u.Hostname(), u.Port()
	qhost, _, _ := net.SplitHostPort(o.qualify(net.JoinHostPort(host, "1"), ns))
	if qhost == host {
		return raw
	}
	u.Host = qhost
	if port != "" {
		u.Host = net.JoinHostPort(qhost, port)
	}
	return u.String()
}
