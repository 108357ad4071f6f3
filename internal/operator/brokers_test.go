package operator

import "testing"

func TestQualifyBrokerAddresses(t *testing.T) {
	o := &Operator{DNS: &ClusterDNS{Domain: "example.internal"}}
	for _, tc := range []struct{ in, want string }{
		{"kafka:9092", "kafka.shop.svc.example.internal:9092"},
		{"kafka.other:9092", "kafka.other:9092"},
		{"10.0.0.5:9092", "10.0.0.5:9092"},
		{"localhost:9092", "localhost:9092"},
		{"kafka", "kafka"}, // no port: the broker's own error says so
	} {
		if got := o.qualify(tc.in, "shop"); got != tc.want {
			t.Errorf("qualify(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"amqp://guest:pw@rabbitmq:5672/", "amqp://guest:pw@rabbitmq.shop.svc.example.internal:5672/"},
		{"amqp://guest:pw@rabbitmq/vh", "amqp://guest:pw@rabbitmq.shop.svc.example.internal/vh"},
		{"amqps://rabbitmq.other.svc:5671/", "amqps://rabbitmq.other.svc:5671/"},
		{"amqp://[::1]:5672/", "amqp://[::1]:5672/"},
		{"http://goaws:4100", "http://goaws.shop.svc.example.internal:4100"},
		{"https://sqs.eu-west-1.amazonaws.com", "https://sqs.eu-west-1.amazonaws.com"},
		{"not a url", "not a url"},
	} {
		if got := o.qualifyURL(tc.in, "shop"); got != tc.want {
			t.Errorf("qualifyURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
