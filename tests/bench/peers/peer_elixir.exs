# peer_elixir.exs: the Elixir side of the keyvisor peer comparison
# (tests/bench/peers/peer_elixir.py starts it; see that file for the metrics).
#
# "One OS process per key" as an Elixir user would write it: a Registry
# (keys: :unique) and a DynamicSupervisor; each child is a GenServer
# (restart: :permanent) registered as {:via, Registry, {KVBench.Reg, key}}
# that opens a Port ({:spawn_executable, worker}, [:exit_status]) running the
# worker, stores the port's OS pid as its Registry value and stops when the
# port exits, so that the DynamicSupervisor starts a new one.
#
# Line protocol: one command per line on stdin, answers are lines starting
# with "KV " on stdout (anything else on stdout is not part of the protocol).
#
#   clock                 -> KV clock NS            (:os.perf_counter, ns)
#   bringup N             -> KV bringup US OK       then KV pids k=p k=p ...
#   pids                  -> KV pids k=p ...
#   watch KEY OLDPID      -> KV ready, then polls Registry.lookup until KEY has
#                            an OS pid != OLDPID that exists in /proc:
#                            KV restarted KEY NEWPID NS POLLS   (or KV timeout)
#   lookup L              -> KV lookup US L BAD
#   add                   -> KV add US OSPID        (start_child "extra")
#   remove                -> KV removed OSPID       (terminate_child "extra")
#   mem                   -> KV mem TOTAL_BYTES PROCESSES PORTS
#   stop                  -> KV stopped N           (supervisor stopped, VM halts)
#
# On EOF on stdin (the driver died) it stops the supervisor, sends SIGTERM
# to every worker OS pid it knows with one `kill` and halts.

defmodule KVBench.Worker do
  use GenServer, restart: :permanent

  def start_link({key, exe}) do
    GenServer.start_link(__MODULE__, {key, exe}, name: {:via, Registry, {KVBench.Reg, key}})
  end

  @impl true
  def init({key, exe}) do
    # use_stdio (the default): the worker's stdin and stdout are pipes to
    # the VM, its stderr is the VM's. bench-worker reads and writes nothing.
    port = Port.open({:spawn_executable, exe}, [:binary, :exit_status])
    {:os_pid, os_pid} = Port.info(port, :os_pid)
    {_, _} = Registry.update_value(KVBench.Reg, key, fn _ -> os_pid end)
    {:ok, %{key: key, port: port, os_pid: os_pid}}
  end

  @impl true
  def handle_info({port, {:exit_status, status}}, %{port: port} = st) do
    # {:shutdown, _}: an expected exit, so GenServer logs no crash report;
    # the DynamicSupervisor restarts a :permanent child whatever the reason.
    {:stop, {:shutdown, {:exit_status, status}}, st}
  end

  def handle_info({port, {:data, _}}, %{port: port} = st), do: {:noreply, st}
  def handle_info(_, st), do: {:noreply, st}
end

defmodule KVBench do
  @reg KVBench.Reg
  @sup KVBench.Sup

  def main(argv) do
    {opts, _, _} = OptionParser.parse(argv, strict: [worker: :string])
    exe = Keyword.fetch!(opts, :worker)
    {:ok, _} = Registry.start_link(keys: :unique, name: @reg)

    {:ok, _} =
      DynamicSupervisor.start_link(
        name: @sup,
        strategy: :one_for_one,
        max_restarts: 1_000_000,
        max_seconds: 1
      )

    reply([
      "hello",
      System.version(),
      List.to_string(:erlang.system_info(:otp_release)),
      List.to_string(:erlang.system_info(:version)),
      Atom.to_string(node()),
      inspect(:erlang.system_info(:os_monotonic_time_source)[:clock_id])
    ])

    loop(%{exe: exe, n: 0})
  end

  defp reply(words), do: IO.puts(["KV " | Enum.intersperse(words, " ")])

  defp key(i), do: "w" <> String.pad_leading(Integer.to_string(i), 4, "0")

  defp loop(st) do
    case IO.gets("") do
      :eof ->
        emergency_stop()

      {:error, _} ->
        emergency_stop()

      line ->
        case String.split(String.trim(line)) do
          ["stop"] ->
            n = stop_sup()
            reply(["stopped", Integer.to_string(n)])
            System.stop(0)
            Process.sleep(:infinity)

          cmd ->
            loop(command(cmd, st))
        end
    end
  end

  defp command(["clock"], st) do
    reply(["clock", Integer.to_string(:os.perf_counter(:nanosecond))])
    st
  end

  defp command(["bringup", n], st) do
    n = String.to_integer(n)
    keys = Enum.map(0..(n - 1), &key/1)
    t0 = :erlang.monotonic_time()

    started =
      Enum.count(keys, fn k ->
        match?({:ok, _}, DynamicSupervisor.start_child(@sup, {KVBench.Worker, {k, st.exe}}))
      end)

    # Every key findable with an OS pid (start_child returned after init/1
    # stored it, so this pass only confirms it).
    found = Enum.count(keys, fn k -> match?([{_, p}] when is_integer(p), Registry.lookup(@reg, k)) end)
    t1 = :erlang.monotonic_time()
    us = :erlang.convert_time_unit(t1 - t0, :native, :microsecond)
    reply(["bringup", Integer.to_string(us), Integer.to_string(min(started, found))])
    send_pids(n)
    %{st | n: n}
  end

  defp command(["pids"], st) do
    send_pids(st.n)
    st
  end

  defp command(["watch", k, old], st) do
    old = String.to_integer(old)
    reply(["ready"])
    deadline = :erlang.monotonic_time(:millisecond) + 10_000
    poll(k, old, deadline, 0)
    st
  end

  defp command(["lookup", l], st) do
    l = String.to_integer(l)
    keys = List.to_tuple(Enum.map(0..(st.n - 1), &key/1))
    want = Map.new(Tuple.to_list(keys), fn k -> {k, lookup_pid(k)} end)

    pairs =
      for _ <- 1..l do
        k = elem(keys, :rand.uniform(st.n) - 1)
        {k, Map.fetch!(want, k)}
      end

    {us, bad} =
      :timer.tc(fn ->
        Enum.reduce(pairs, 0, fn {k, p}, acc ->
          case Registry.lookup(@reg, k) do
            [{_, ^p}] -> acc
            _ -> acc + 1
          end
        end)
      end)

    reply(["lookup", Integer.to_string(us), Integer.to_string(l), Integer.to_string(bad)])
    st
  end

  defp command(["add"], st) do
    t0 = :erlang.monotonic_time()
    res = DynamicSupervisor.start_child(@sup, {KVBench.Worker, {"extra", st.exe}})
    p = lookup_pid("extra")
    t1 = :erlang.monotonic_time()

    case {res, p} do
      {{:ok, _}, p} when is_integer(p) ->
        us = :erlang.convert_time_unit(t1 - t0, :native, :microsecond)
        reply(["add", Integer.to_string(us), Integer.to_string(p)])

      _ ->
        reply(["error", "add", inspect(res) |> String.replace(" ", "")])
    end

    st
  end

  defp command(["remove"], st) do
    case Registry.lookup(@reg, "extra") do
      [{pid, os_pid}] ->
        :ok = DynamicSupervisor.terminate_child(@sup, pid)
        wait_unregistered("extra", 5000)
        reply(["removed", Integer.to_string(os_pid)])

      [] ->
        reply(["error", "remove", "not_found"])
    end

    st
  end

  defp command(["mem"], st) do
    reply([
      "mem",
      Integer.to_string(:erlang.memory(:total)),
      Integer.to_string(:erlang.system_info(:process_count)),
      Integer.to_string(:erlang.system_info(:port_count))
    ])

    st
  end

  defp command(other, st) do
    reply(["error", "unknown", Enum.join(other, "_")])
    st
  end

  defp lookup_pid(k) do
    case Registry.lookup(@reg, k) do
      [{_, p}] when is_integer(p) -> p
      _ -> nil
    end
  end

  defp send_pids(n) do
    pairs = for i <- 0..(n - 1)//1, do: "#{key(i)}=#{lookup_pid(key(i))}"
    reply(["pids" | pairs])
  end

  # The timed loop of the restart workload: Registry.lookup until the key
  # has a new OS pid, then check that /proc/PID exists (the VM's kill(pid,0)),
  # with :erlang.yield() between lookups.
  defp poll(k, old, deadline, n) do
    case Registry.lookup(@reg, k) do
      [{_, p}] when is_integer(p) and p != old ->
        if File.exists?("/proc/" <> Integer.to_string(p)) do
          t = :os.perf_counter(:nanosecond)
          reply(["restarted", k, Integer.to_string(p), Integer.to_string(t), Integer.to_string(n)])
        else
          poll_next(k, old, deadline, n)
        end

      _ ->
        poll_next(k, old, deadline, n)
    end
  end

  defp poll_next(k, old, deadline, n) do
    if rem(n, 4096) == 4095 and :erlang.monotonic_time(:millisecond) > deadline do
      reply(["timeout", k])
    else
      # Let the restart (port, GenServer, DynamicSupervisor, Registry) run
      # first: a poller that never yields holds a scheduler for its whole
      # time slice and made the restarts ~10x slower on 2 busy cores.
      :erlang.yield()
      poll(k, old, deadline, n + 1)
    end
  end

  defp wait_unregistered(k, left) do
    cond do
      Registry.lookup(@reg, k) == [] -> :ok
      left <= 0 -> :timeout
      true ->
        Process.sleep(1)
        wait_unregistered(k, left - 1)
    end
  end

  defp all_os_pids do
    Registry.select(@reg, [{{:_, :_, :"$1"}, [{:is_integer, :"$1"}], [:"$1"]}])
  end

  # Stops the DynamicSupervisor: its children exit, their ports close (the
  # workers' stdin is closed; bench-worker ignores that and keeps running:
  # the driver kills them by pid). Returns how many workers were running.
  defp stop_sup do
    n = length(all_os_pids())
    DynamicSupervisor.stop(@sup, :normal, 30_000)
    n
  end

  defp emergency_stop do
    pids = all_os_pids()
    DynamicSupervisor.stop(@sup, :normal, 30_000)

    if pids != [] do
      System.cmd("kill", ["-TERM" | Enum.map(pids, &Integer.to_string/1)], stderr_to_stdout: true)
    end

    System.halt(1)
  end
end

KVBench.main(System.argv())
