package probe

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// UDPChecksumErrors reads Udp InCsumErrors of the calling thread's network
// namespace (/proc/thread-self/net/snmp, which is /proc/net/snmp for a
// process that never switches namespaces): a counter that rises when UDP
// packets, encapsulated ones among them, arrive with bad checksums.
func UDPChecksumErrors() (uint64, error) {
	f, err := os.Open("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("read UDP counters: %w", err)
	}
	defer f.Close()
	v, err := snmpCounter(f, "Udp", "InCsumErrors")
	if err != nil {
		return 0, fmt.Errorf("read UDP counters from %s: %w", f.Name(), err)
	}
	return v, nil
}

// snmpCounter finds one counter in the /proc/net/snmp format: per protocol
// a line of names and a line of values, both starting with "Proto:".
func snmpCounter(r io.Reader, proto, name string) (uint64, error) {
	sc := bufio.NewScanner(r)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != proto+":" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		for i, n := range names {
			if n != name {
				continue
			}
			if i+1 >= len(fields) {
				return 0, fmt.Errorf("%s %s: no value", proto, name)
			}
			v, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %s: %w", proto, name, err)
			}
			return v, nil
		}
		return 0, fmt.Errorf("%s has no counter %s (kernel too old?)", proto, name)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s counters", proto)
}
