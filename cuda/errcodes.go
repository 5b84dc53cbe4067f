package cuda

// stickyCodes are the CUresult values after which the CUDA documentation says the context (and
// so the process) is left in an inconsistent state and every further CUDA call fails: the
// engine stops using the device, and the CPU engine takes over for the rest of the run. Every
// other error (out of memory above all) leaves the context usable for the next batch.
var stickyCodes = map[int]string{
	4:   "CUDA_ERROR_DEINITIALIZED",
	214: "CUDA_ERROR_ECC_UNCORRECTABLE",
	220: "CUDA_ERROR_NVLINK_UNCORRECTABLE",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	703: "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING",
	709: "CUDA_ERROR_CONTEXT_IS_DESTROYED",
	714: "CUDA_ERROR_HARDWARE_STACK_ERROR",
	715: "CUDA_ERROR_ILLEGAL_INSTRUCTION",
	716: "CUDA_ERROR_MISALIGNED_ADDRESS",
	717: "CUDA_ERROR_INVALID_ADDRESS_SPACE",
	718: "CUDA_ERROR_INVALID_PC",
	719: "CUDA_ERROR_LAUNCH_FAILED",
	999: "CUDA_ERROR_UNKNOWN",
}

// isSticky reports whether the CUresult code leaves the context unusable.
func isSticky(code int) bool {
	_, ok := stickyCodes[code]
	return ok
}
