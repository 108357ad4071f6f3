module tether.local/hack/cluster/tools

go 1.26
