import QBTools

QBTool.untar.main()
