// Package bench measures papo's engines against the machine's own limit: the memory
// bandwidth at which logits can be read. Reading every logit once is the least any engine
// must do, so throughput is reported as tokens/s and as GB/s of logits next to the measured
// read bandwidth of the same threads (the roofline). Results, machine and date are recorded
// in bench/RESULTS.md.
package bench
