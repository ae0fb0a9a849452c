"""What the tests share: numpy references and error measures (`references`), memory
layouts of inputs and guarded outputs (`layouts`), and calls in threads, forked children
and under the memory meter (`processes`)."""
