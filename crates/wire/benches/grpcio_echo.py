"""Python grpcio echo, the reference `cargo bench -p wire` measures beside Agora's wire: a unary
call whose request and response are the raw payload bytes (no protobuf, no signature, no
checks), over grpc.aio on loopback, server and client in separate processes.

  python3 grpcio_echo.py serve                      prints "LISTEN 127.0.0.1:PORT", serves until stdin closes
  python3 grpcio_echo.py call ADDR SIZE CONC SECS   CONC concurrent callers for SECS seconds (at least 5
                                                    calls each, after 3 warm-up calls); prints one JSON line
                                                    {"calls", "failures", "secs", "latencies_us": [...]}
"""

import asyncio
import json
import sys
import time

import grpc

METHOD = "/bench.Echo/Echo"
LIMIT = 64 << 20
OPTIONS = [("grpc.max_send_message_length", LIMIT), ("grpc.max_receive_message_length", LIMIT)]


async def serve() -> None:
    async def echo(request: bytes, context) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"LISTEN 127.0.0.1:{port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


async def call(addr: str, size: int, conc: int, secs: float) -> None:
    payload = bytes(7 for _ in range(size))
    async with grpc.aio.insecure_channel(addr, options=OPTIONS) as channel:
        echo = channel.unary_unary(METHOD)
        for _ in range(3):
            await echo(payload)
        latencies, failures = [], 0
        stop = time.perf_counter() + secs

        async def loop() -> None:
            nonlocal failures
            n = 0
            while time.perf_counter() < stop or n < 5:
                t = time.perf_counter()
                back = await echo(payload)
                latencies.append(int((time.perf_counter() - t) * 1e6))
                failures += len(back) != size
                n += 1

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(conc)))
        elapsed = time.perf_counter() - start
    print(json.dumps({"calls": len(latencies), "failures": failures, "secs": elapsed, "latencies_us": latencies}),
          flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve())
    elif sys.argv[1:2] == ["call"]:
        asyncio.run(call(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    else:
        sys.exit(__doc__)
