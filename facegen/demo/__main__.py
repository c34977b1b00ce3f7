from facegen.demo.run import main

main()
