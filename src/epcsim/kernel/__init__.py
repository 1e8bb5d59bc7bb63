"""The Linux SGX driver model: arch/x86/kernel/cpu/sgx/."""
