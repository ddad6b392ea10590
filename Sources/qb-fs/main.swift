import QBTools

QBTool.fs.main()
