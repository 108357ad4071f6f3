package operator

import (
	"fmt"
	"regexp"
	"strings"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
)

// The temporary queues of a split are named after the workload's queue:
// SOURCE-tether-fallback for the deployed workload, SOURCE-tether-RUN for
// a session (groups likewise), so an operator that restarts finds them.
// An SQS FIFO queue's name must end in .fifo: BASE.fifo becomes
// BASE-tether-fallback.fifo.
const tempInfix = "-tether-"

const fifoSuffix = ".fifo"

func fallbackName(source string) string { return tempName(source, "fallback") }

func sessionQueueName(source, run string) string { return tempName(source, run) }

func tempName(source, what string) string {
	if source == "" {
		return ""
	}
	base, fifo := strings.CutSuffix(source, fifoSuffix)
	if fifo {
		return base + tempInfix + what + fifoSuffix
	}
	return source + tempInfix + what
}

// nameIn is the queue name in value: all of it, or the first capture of
// selector's regex.
func nameIn(sel queuesv1.EnvSelector, value string) (string, error) {
	if sel.Regex == "" {
		if value == "" {
			return "", fmt.Errorf("variable %s is empty: it should hold the queue's name", sel.Env)
		}
		return value, nil
	}
	re, err := compileSelector(sel)
	if err != nil {
		return "", err
	}
	m := re.FindStringSubmatch(value)
	if m == nil || m[1] == "" {
		return "", fmt.Errorf("variable %s (%q) does not match the QueueSplit's regex %q: fix the regex, or the variable", sel.Env, value, sel.Regex)
	}
	return m[1], nil
}

// withName is value with the queue name in it replaced by name.
func withName(sel queuesv1.EnvSelector, value, name string) (string, error) {
	if sel.Regex == "" {
		return name, nil
	}
	re, err := compileSelector(sel)
	if err != nil {
		return "", err
	}
	loc := re.FindStringSubmatchIndex(value)
	if loc == nil || loc[2] < 0 {
		return "", fmt.Errorf("variable %s (%q) does not match the QueueSplit's regex %q", sel.Env, value, sel.Regex)
	}
	return value[:loc[2]] + name + value[loc[3]:], nil
}

func compileSelector(sel queuesv1.EnvSelector) (*regexp.Regexp, error) {
	re, err := regexp.Compile(sel.Regex)
	if err != nil {
		return nil, fmt.Errorf("the QueueSplit's regex %q for %s: %w", sel.Regex, sel.Env, err)
	}
	if re.NumSubexp() < 1 {
		return nil, fmt.Errorf("the QueueSplit's regex %q for %s has no capture group: put the queue name's part in ( )", sel.Regex, sel.Env)
	}
	return re, nil
}

// splitTarget parses a QueueSplit's spec.target.
func splitTarget(qs *queuesv1.QueueSplit) (kube.TargetSpec, error) {
	spec, err := kube.ParseTarget(qs.Spec.Target)
	if err != nil {
		return spec, fmt.Errorf("QueueSplit %s/%s: spec.target: %w", qs.Namespace, qs.Name, err)
	}
	if spec.Kind != kube.KindDeployment && spec.Kind != kube.KindStatefulSet {
		return spec, fmt.Errorf("QueueSplit %s/%s: spec.target %s: queue splitting patches a deployment or a statefulset", qs.Namespace, qs.Name, qs.Spec.Target)
	}
	return spec, nil
}

// validateSplit checks what the API server's schema cannot: the kinds'
// settings and the regexes.
func validateSplit(qs *queuesv1.QueueSplit) error {
	if _, err := splitTarget(qs); err != nil {
		return err
	}
	var errs []string
	for _, q := range qs.Spec.Queues {
		where := fmt.Sprintf("queue %q", q.ID)
		if q.NameFrom.Env == "" {
			errs = append(errs, where+": nameFrom.env is required")
		}
		if q.NameFrom.Regex != "" {
			if _, err := compileSelector(q.NameFrom); err != nil {
				errs = append(errs, where+": "+err.Error())
			}
		}
		switch q.Kind {
		case "kafka":
			if q.Kafka == nil {
				errs = append(errs, where+": kind kafka needs kafka.brokers")
			}
			if q.GroupFrom == nil || q.GroupFrom.Env == "" {
				errs = append(errs, where+": kind kafka needs groupFrom.env, the variable the workload reads its consumer group from (the deployed workload moves to a group of its own while a split runs)")
			}
		case "rabbitmq":
			if q.RabbitMQ == nil {
				errs = append(errs, where+": kind rabbitmq needs rabbitmq.url")
			}
		case "sqs":
			if q.SQS == nil {
				errs = append(errs, where+": kind sqs needs sqs.region")
			}
		default:
			errs = append(errs, fmt.Sprintf("%s: unknown kind %q (want kafka, rabbitmq or sqs)", where, q.Kind))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("QueueSplit %s/%s: %s", qs.Namespace, qs.Name, strings.Join(errs, "; "))
	}
	return nil
}
